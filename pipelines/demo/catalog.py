"""The demo city's departments, incident categories, sensor kinds and demo users.

Every demo user has the same password, ``DEMO_PASSWORD``; ``DEMO_USERS`` lists who they are.

================  ===========  ========================================  ===========================
username          role         bound to                                  description
================  ===========  ========================================  ===========================
``commander``     commander    the city                                  市城运中心值班员
``commander_d1``  commander    district 1 (the urban core)               区城运分中心值班员
``leader``        leader       the city                                  市领导
``leader_d1``     leader       district 1                                区领导
``cg_staff``      dept_staff   城管 urban management (``cg``)            城管局工作人员
``hb_admin``      dept_admin   生态环境 ecology & environment (``sthj``)  生态环境局数据管理员
``street_1``      grassroots   street 1 of district 1                    街道工作人员
``grid_1``        grid_worker  community 1 of that street                网格员
``social_1``      social_org   the volunteers' federation (``shzz``)     志愿者联合会
``vendor_1``      vendor_tech  the vendor's on-site team (``vendor``)    驻场技术人员
``sysadmin``      sysadmin     the city                                  系统管理员
``secadmin``      secadmin     the city                                  安全管理员
``auditor``       auditor      the city                                  审计员
================  ===========  ========================================  ===========================

>>> DEMO_PASSWORD
'Yiwang#2026'
>>> {u.role for u in DEMO_USERS} == set(Role)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.roles import Role
from core.sharing import register_dataset
from core.store import Store
from core.users import create_user

__all__ = [
    "CATEGORIES",
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "DemoUser",
    "SENSOR_KINDS",
    "SLA_HOURS",
    "categories_frame",
    "create_demo_users",
    "register_demo_datasets",
    "departments_frame",
    "government_department",
    "sensor_kinds_frame",
]

DEMO_PASSWORD = "Yiwang#2026"

# (code, zh, en): city-level line departments
_DEPARTMENTS = (
    ("cg", "城市管理局", "Urban Management Bureau"),
    ("sw", "水务局", "Water Affairs Bureau"),
    ("sthj", "生态环境局", "Ecology and Environment Bureau"),
    ("jt", "交通运输局", "Transport Bureau"),
    ("ga", "公安局", "Public Security Bureau"),
    ("yj", "应急管理局", "Emergency Management Bureau"),
    ("zj", "住房和城乡建设局", "Housing and Construction Bureau"),
    ("scjg", "市场监督管理局", "Market Regulation Bureau"),
    ("wj", "卫生健康委员会", "Health Commission"),
    ("mz", "民政局", "Civil Affairs Bureau"),
    ("gd", "供电公司", "Power Supply Company"),
    ("rq", "燃气公司", "Gas Company"),
)
_SPECIAL = (
    ("cyzx", "城市运行管理中心", "City Operations Centre", "command"),
    ("shzz", "志愿者联合会", "Volunteers' Federation", "social_org"),
    ("vendor", "驻场运维服务团队", "On-site Vendor Team", "vendor"),
)

# claim within / resolve within, hours (design §5)
SLA_HOURS = {
    "emergency": (0.5, 2.0),
    "utilities": (2.0, 24.0),
    "general": (8.0, 168.0),
    "complex": (24.0, 360.0),
}

# code, zh, en, department, default priority, SLA tier, district_only, social_help, weight
CATEGORIES = (
    ("road_waterlogging", "道路积水", "Road waterlogging", "sw", "high", "utilities", False, False, 5),
    ("manhole_cover", "井盖缺失破损", "Missing or broken manhole cover", "cg", "emergency",
     "emergency", False, False, 4),
    ("garbage_overflow", "垃圾满溢", "Overflowing garbage", "cg", "normal", "utilities",
     False, True, 14),
    ("street_vending", "占道经营", "Street vending on the road", "cg", "normal", "general",
     False, False, 10),
    ("illegal_parking", "违章停车", "Illegal parking", "ga", "normal", "utilities", False, False, 12),
    ("air_pollution", "大气污染", "Air pollution", "sthj", "high", "utilities", False, False, 4),
    ("noise_nuisance", "噪声扰民", "Noise nuisance", "sthj", "normal", "general", False, False, 9),
    ("enterprise_discharge", "企业违法排污", "Illegal industrial discharge", "sthj", "high",
     "complex", True, False, 2),
    ("water_supply", "供水故障", "Water supply failure", "sw", "high", "utilities", False, False, 5),
    ("power_outage", "停电故障", "Power outage", "gd", "high", "utilities", False, False, 4),
    ("gas_leak", "燃气泄漏", "Gas leak", "rq", "emergency", "emergency", False, False, 1),
    ("fire_hazard", "消防安全隐患", "Fire hazard", "yj", "emergency", "emergency", False, False, 2),
    ("traffic_signal", "信号灯故障", "Traffic signal failure", "jt", "high", "utilities",
     False, False, 3),
    ("road_damage", "道路破损", "Damaged road surface", "jt", "normal", "general", False, False, 6),
    ("illegal_construction", "违法建设", "Illegal construction", "zj", "normal", "complex",
     True, False, 4),
    ("building_safety", "房屋安全隐患", "Unsafe building", "zj", "high", "complex", True, False, 2),
    ("food_safety", "食品安全", "Food safety", "scjg", "normal", "general", False, False, 4),
    ("public_health", "病媒生物防制", "Pest and vector control", "wj", "low", "general",
     False, True, 3),
    ("elderly_care", "独居老人帮扶", "Help for elderly living alone", "mz", "normal", "general",
     False, True, 3),
    ("neighbour_dispute", "邻里纠纷", "Neighbour dispute", "mz", "low", "general", False, True, 4),
    ("greenery", "绿化养护", "Greenery upkeep", "cg", "low", "general", False, True, 5),
)

# kind, zh, en, unit, department, warn, alarm
SENSOR_KINDS = (
    ("pm25", "空气质量PM2.5", "Air quality PM2.5", "µg/m³", "sthj", 75.0, 115.0),
    ("water_level", "水位", "Water level", "m", "sw", 4.5, 5.0),
    ("noise", "环境噪声", "Ambient noise", "dB(A)", "sthj", 70.0, 80.0),
    ("traffic_flow", "交通流量", "Traffic flow", "vehicles/15 min", "jt", 500.0, 650.0),
    ("manhole_tilt", "井盖倾角", "Manhole cover tilt", "°", "cg", 5.0, 15.0),
    ("smoke", "烟雾浓度", "Smoke obscuration", "%/m", "yj", 2.0, 4.0),
    ("gas", "燃气浓度", "Gas concentration", "%LEL", "rq", 10.0, 25.0),
)


@dataclass(frozen=True)
class DemoUser:
    """One demo account. ``binding`` says what it is bound to: ``city``, ``district``,
    ``street``, ``community`` (the first of that level) or a department code."""

    username: str
    role: Role
    binding: str
    display_name: str
    description: str


DEMO_USERS = (
    DemoUser("commander", Role.COMMANDER, "city", "市值班员", "市城运中心值班员"),
    DemoUser("commander_d1", Role.COMMANDER, "district", "区值班员", "区城运分中心值班员"),
    DemoUser("leader", Role.LEADER, "city", "市领导", "市领导（驾驶舱）"),
    DemoUser("leader_d1", Role.LEADER, "district", "区领导", "区领导（驾驶舱）"),
    DemoUser("cg_staff", Role.DEPT_STAFF, "cg", "城管局工作人员", "城管局工作人员：签收、办结工单"),
    DemoUser("hb_admin", Role.DEPT_ADMIN, "sthj", "生态环境局管理员", "生态环境局数据管理员：审批订阅"),
    DemoUser("street_1", Role.GRASSROOTS, "street", "街道工作人员", "街道工作人员：回流数据、基层工单"),
    DemoUser("grid_1", Role.GRID_WORKER, "community", "网格员", "社区网格员：巡查上报、现场核查"),
    DemoUser("social_1", Role.SOCIAL_ORG, "shzz", "志愿者联合会", "社会组织：认领社会帮扶类工单"),
    DemoUser("vendor_1", Role.VENDOR_TECH, "vendor", "驻场工程师", "驻场技术人员：运维页面，操作留痕"),
    DemoUser("sysadmin", Role.SYSADMIN, "city", "系统管理员", "系统管理员：用户与配置"),
    DemoUser("secadmin", Role.SECADMIN, "city", "安全管理员", "安全管理员：角色与策略"),
    DemoUser("auditor", Role.AUDITOR, "city", "审计员", "审计员：审计日志"),
)


def government_department(district_code: str) -> str:
    """Code of a district government's department (the fallback owner, 兜底)."""
    return f"gov_{district_code}"


def departments_frame(districts: pd.DataFrame, city_code: str) -> pd.DataFrame:
    """Every department: line departments, command, social org, vendor, one per district."""
    rows = [(code, zh, en, "department", city_code) for code, zh, en in _DEPARTMENTS]
    rows += [(code, zh, en, kind, city_code) for code, zh, en, kind in _SPECIAL]
    rows += [
        (government_department(code), f"{zh}人民政府", f"{en} Government", "government", code)
        for code, zh, en in districts[["code", "name_zh", "name_en"]].itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=["code", "name_zh", "name_en", "kind", "jurisdiction_code"])


def categories_frame() -> pd.DataFrame:
    """``incident_categories`` rows, plus the sampling ``weight`` column."""
    rows = [
        (code, zh, en, dept, prio, *SLA_HOURS[tier], district_only, social, weight)
        for code, zh, en, dept, prio, tier, district_only, social, weight in CATEGORIES
    ]
    return pd.DataFrame(rows, columns=[
        "code", "name_zh", "name_en", "department_code", "default_priority", "claim_hours",
        "resolve_hours", "district_only", "social_help", "weight",
    ])


def sensor_kinds_frame() -> pd.DataFrame:
    return pd.DataFrame(SENSOR_KINDS, columns=[
        "kind", "name_zh", "name_en", "unit", "department_code", "warn", "alarm"])


def create_demo_users(store: Store, first: dict[str, str]) -> list[str]:
    """Create every ``DEMO_USERS`` account with ``DEMO_PASSWORD``.

    ``first`` maps a level (``city``, ``district``, ``street``, ``community``) to the code
    the level-bound users are bound to.
    """
    for user in DEMO_USERS:
        if user.binding in first:
            where = {"jurisdiction_code": first[user.binding]}
        else:
            where = {"department_code": user.binding}
        create_user(store, user.username, DEMO_PASSWORD, role=user.role,
                    display_name=user.display_name, **where)
    return [u.username for u in DEMO_USERS]


# The data catalog of the demo city (design §4): one dataset of each classification.
DEMO_DATASETS = (
    dict(id="readings_hourly", table_name="readings_hourly", name_zh="物联感知小时汇总",
         name_en="Hourly sensor readings", owner_department="sthj", classification="public",
         sharing="backflow"),
    dict(id="sensors", table_name="sensors", name_zh="感知设备台账", name_en="Sensor registry",
         owner_department="sthj", classification="internal", sharing="subscription"),
    dict(id="incidents", table_name="incidents", name_zh="城市事件工单", name_en="City incidents",
         owner_department="cyzx", classification="sensitive", sharing="backflow",
         columns=["id", "tracking_code", "category", "status", "title", "jurisdiction_code",
                  "reported_at", "closed_at", "reporter_contact"],
         sensitive_columns=["reporter_contact"]),
    dict(id="alerts", table_name="alerts", name_zh="环境告警研判", name_en="Alert analysis",
         owner_department="sthj", classification="secret", sharing="owner_only"),
)


def register_demo_datasets(store: Store) -> None:
    """Put the demo city's datasets in the catalog (replacing earlier entries)."""
    for dataset in DEMO_DATASETS:
        register_dataset(store, **dataset)
