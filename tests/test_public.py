"""core.public: reporting, the public-safe view, rating, assisted reports, photos, API keys —
against a real DuckDB file and the real incident state machine."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from public_helpers import add_categories, close_incident, jpeg_with_exif

from core import api_keys, public
from core.store import Store
from core.users import create_user, get_user

POINT = {"lon": 0.5, "lat": 0.25}  # inside community D1S1C1 of the tiny city


@pytest.fixture
def city(tiny_city: Store) -> Store:
    add_categories(tiny_city)
    return tiny_city


def _counts(store: Store) -> tuple[int, ...]:
    return tuple(store.query_one(f"SELECT count(*) FROM {t}")[0] for t in (
        "incidents", "incident_events", "public_reports", "public_photos"))


def test_report_track_close_and_rate(city: Store) -> None:
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "垃圾桶满了，请联系 13812345678",
                                          "contact": "138-1234-5678", **POINT})
    assert receipt.tracking_code.startswith("YW")
    view = public.public_view(city, receipt.tracking_code, key=receipt.key)
    assert view.status == "reported" and view.is_open and not view.rateable
    assert "13812345678" not in view.description and "138****5678" in view.description
    assert view.department_zh is None  # suggested, not yet dispatched
    stored = city.query_one("SELECT reporter_contact, source FROM incidents WHERE id = ?",
                            [receipt.incident_id])
    assert stored == ("13812345678", "citizen_app")

    close_incident(city, receipt.incident_id)
    view = public.public_view(city, receipt.tracking_code, key=receipt.key)
    assert view.status == "closed" and view.rateable
    texts = " ".join(s.text_zh + s.text_en for s in view.steps)
    # no staff names, usernames or internal notes in the public timeline
    for secret in ("cg_staff", "commander", "张三", "已清运", "13812345678", "市值班员"):
        assert secret not in texts
    assert [s.action for s in view.steps] == ["report", "dispatch", "claim", "start",
                                              "resolve", "verify", "close"]
    assert "城管局" in texts

    # the tracking code alone shows the timeline but cannot rate
    assert not public.public_view(city, receipt.tracking_code).rateable
    with pytest.raises(public.PublicError) as err:
        public.rate(city, receipt.tracking_code, "WRONGKEY22", 5)
    assert err.value.status == 403
    result = public.rate(city, receipt.tracking_code, receipt.key, 5, "很快")
    assert result.rating == 5 and not result.reopened
    assert city.query_one("SELECT rating FROM incidents WHERE id = ?",
                          [receipt.incident_id])[0] == 5
    with pytest.raises(public.PublicError):
        public.rate(city, receipt.tracking_code, receipt.key, 4)


def test_rating_before_closure_is_refused(city: Store) -> None:
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "满了", **POINT})
    with pytest.raises(public.PublicError) as err:
        public.rate(city, receipt.tracking_code, receipt.key, 1)
    assert err.value.status == 409
    assert city.query_one("SELECT count(*) FROM public_ratings")[0] == 0


def test_bad_rating_asks_for_a_second_follow_up(city: Store) -> None:
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "满了", **POINT})
    close_incident(city, receipt.incident_id)
    result = public.rate(city, receipt.tracking_code, receipt.key, 1, "没处理好")
    assert result.rating == 1
    assert result.reopened and not result.follow_up_pending
    assert city.query_one("SELECT rating, reopened FROM public_ratings") == (1, True)
    view = public.public_view(city, receipt.tracking_code, key=receipt.key)
    assert view.steps[-1].action == "reopen" and view.is_open and not view.rateable
    status = city.query_one("SELECT status FROM incidents WHERE id = ?",
                            [receipt.incident_id])[0]
    assert status == "reopened"


@pytest.mark.parametrize("bad, field", [
    ({"category": "garbage_overflow", "description": "", **POINT}, "description"),
    ({"category": "garbage_overflow", "description": "x" * 2001, **POINT}, "description"),
    ({"category": "garbage_overflow", "description": "ok ok", "lon": 999, "lat": 0.2}, "lon"),
    ({"category": "garbage_overflow", "description": "ok ok", "lon": float("nan"),
      "lat": 0.2}, "lon"),
    ({"category": "garbage_overflow", "description": "ok ok", "contact": "call me", **POINT},
     "contact"),
    ({"category": "garbage_overflow", "description": "ok ok", "extra": 1, **POINT}, "extra"),
    ({"category": "nope", "description": "ok ok", **POINT}, "category"),
    ({"category": "garbage_overflow", "description": "ok ok", "lon": 5.0, "lat": 5.0},
     "location"),
    ({"category": "garbage_overflow", "description": "ok ok", "on_behalf_of": "王阿姨",
      **POINT}, "on_behalf_of"),
])
def test_bad_input_is_refused_clearly_and_writes_nothing(city: Store, bad: dict,
                                                         field: str) -> None:
    before = _counts(city)
    with pytest.raises(public.PublicError) as err:
        public.submit_report(city, bad)
    assert err.value.field == field, err.value.message
    assert 400 <= err.value.status < 500
    assert field in err.value.message or err.value.field in ("category", "location")
    assert _counts(city) == before


def test_script_is_kept_as_text(city: Store) -> None:
    text = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    receipt = public.submit_report(city, {"category": "garbage_overflow", "description": text,
                                          **POINT})
    assert public.public_view(city, receipt.tracking_code).description == text


def test_photo_metadata_is_stripped(city: Store, tmp_path) -> None:
    raw = jpeg_with_exif()
    assert b"SecretCameraMaker" in raw
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "看照片", **POINT}, photo=raw)
    rel, width, height = city.query_one("SELECT path, width, height FROM public_photos"
                                        " WHERE incident_id = ?", [receipt.incident_id])
    stored = (tmp_path / "photos" / rel).read_bytes()
    assert (width, height) == (64, 48)
    for secret in (b"SecretCameraMaker", b"SecretSoftware", b"secret comment", b"Exif"):
        assert secret not in stored
    with Image.open(io.BytesIO(stored)) as im:
        assert im.format == "JPEG" and not im.getexif()
    assert public.public_view(city, receipt.tracking_code).photos == 1


@pytest.mark.parametrize("data, status", [
    (b"GIF89a" + b"\0" * 64, 415),
    (b"not an image at all", 415),
    (b"\xff\xd8\xff" + b"\0" * (public.PHOTO_MAX_BYTES + 1), 413),
])
def test_bad_photos_are_refused_and_nothing_written(city: Store, data: bytes,
                                                    status: int) -> None:
    before = _counts(city)
    with pytest.raises(public.PublicError) as err:
        public.submit_report(city, {"category": "garbage_overflow", "description": "照片",
                                    **POINT}, photo=data)
    assert err.value.status == status and err.value.field == "photo"
    assert _counts(city) == before


def test_large_photo_is_downscaled() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 1000), (1, 2, 3)).save(buf, "PNG")
    clean = public.clean_photo(buf.getvalue())
    assert (clean.width, clean.height) == (public.PHOTO_MAX_SIDE, 512)


def test_assisted_report_is_recorded_as_such(city: Store) -> None:
    create_user(city, "grid_1", "Tiny#City2026", role="grid_worker", jurisdiction_code="D1S1C1")
    grid = get_user(city, "grid_1")
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "王阿姨反映楼下垃圾",
                                          "on_behalf_of": "王阿姨（无智能手机）", **POINT},
                                   actor=grid)
    row = city.query_one("SELECT channel, assisted_by, on_behalf_of FROM public_reports"
                         " WHERE incident_id = ?", [receipt.incident_id])
    assert row == ("assisted", "grid_1", "王阿姨（无智能手机）")
    assert city.query_one("SELECT source FROM incidents WHERE id = ?",
                          [receipt.incident_id])[0] == "grid_patrol"
    with pytest.raises(public.PublicError, match="on_behalf_of"):
        public.submit_report(city, {"category": "garbage_overflow", "description": "x y",
                                    **POINT}, actor=grid)
    staff = get_user(city, "cg_staff")
    with pytest.raises(public.PublicError) as err:
        public.submit_report(city, {"category": "garbage_overflow", "description": "x y",
                                    "on_behalf_of": "someone", **POINT}, actor=staff)
    assert err.value.status == 403


def test_nearby_open_reports_are_suggested(city: Store) -> None:
    first = public.submit_report(city, {"category": "garbage_overflow",
                                        "description": "满了", **POINT})
    second = public.submit_report(city, {"category": "garbage_overflow", "description": "又满了",
                                         "lon": 0.5005, "lat": 0.2502})
    assert [d.tracking_code for d in second.duplicates] == [first.tracking_code]
    other = public.submit_report(city, {"category": "road_waterlogging",
                                        "description": "积水", **POINT})
    assert other.duplicates == ()


def test_internal_incidents_are_not_public(city: Store) -> None:
    from core.incidents import report_incident

    inc = report_incident(city, None, category="garbage_overflow", title="传感器", source="sensor_alert",
                          **POINT)
    assert public.public_view(city, inc.tracking_code) is None
    assert public.public_view(city, "'; DROP TABLE incidents; --") is None


def test_api_keys_are_hashed_and_revocable(city: Store) -> None:
    key, secret = api_keys.create_api_key(city, None, "Partner app", per_minute=5)
    assert api_keys.verify_api_key(city, secret).id == key.id
    assert secret not in str(city.query("SELECT * FROM public_api_keys"))
    assert api_keys.verify_api_key(city, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert api_keys.verify_api_key(city, "nonsense") is None
    with pytest.raises(public.PublicError):
        api_keys.create_api_key(city, get_user(city, "commander"), "nope")
    api_keys.revoke_api_key(city, get_user(city, "sysadmin"), key.id)
    assert api_keys.verify_api_key(city, secret) is None


def test_services_come_from_categories(city: Store) -> None:
    codes = [s.code for s in public.list_services(city)]
    assert codes == ["garbage_overflow", "manhole_cover", "road_waterlogging"]
    assert public.get_service(city, "garbage_overflow").group_en == "Urban Management"


def test_rating_again_after_the_second_closure(city: Store) -> None:
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "又满了", **POINT})
    close_incident(city, receipt.incident_id)
    assert public.rate(city, receipt.tracking_code, receipt.key, 2).reopened
    # handled a second time: the reporter rates the second closure too
    close_incident(city, receipt.incident_id)
    view = public.public_view(city, receipt.tracking_code, key=receipt.key)
    assert view.status == "closed" and view.rateable
    second = public.rate(city, receipt.tracking_code, receipt.key, 5, "这次好了")
    assert second.rating == 5 and not second.reopened
    assert city.query("SELECT rating, reopened FROM public_ratings ORDER BY rated_at,"
                      " rating") == [(2, True), (5, False)]
    assert city.query_one("SELECT rating, status FROM incidents WHERE id = ?",
                          [receipt.incident_id]) == (5, "closed")
    with pytest.raises(public.PublicError):  # and only once per closure
        public.rate(city, receipt.tracking_code, receipt.key, 4)


def test_a_report_that_fails_midway_leaves_nothing(city: Store, tmp_path) -> None:
    """The incident, its public record, its photo and the audit entries commit together: a
    failure after the incident row was written (here: the photo folder cannot be made)
    rolls all of it back, and the audit chain still verifies."""
    from core.audit import verify_chain

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the photo folder should be")
    before = (*_counts(city), city.query_one("SELECT count(*) FROM audit_log")[0])
    with pytest.raises(OSError):
        public.submit_report(city, {"category": "garbage_overflow", "description": "照片",
                                    **POINT}, photo=jpeg_with_exif(),
                             photo_dir=blocker / "photos")
    assert (*_counts(city), city.query_one("SELECT count(*) FROM audit_log")[0]) == before
    assert verify_chain(city).ok
    receipt = public.submit_report(city, {"category": "garbage_overflow",
                                          "description": "再报一次", **POINT})
    assert receipt.incident_id == city.query_one("SELECT max(id) FROM incidents")[0]
    assert verify_chain(city).ok
