"""Benchmark: the public API on a demo city (default 20,000 incidents, few sensors).

Measures Open311 ``GET requests.json`` (the 90-day list, up to 1,000 rows), one request by
id, one ``POST requests.json``, ``core.public.public_view`` and cleaning a 12-megapixel
photo. Run alone with ``python tests/benchmarks/bench_public.py``.
"""

from __future__ import annotations

import io
import tempfile
import time

from PIL import Image

from core import api_keys, public
from core.settings import load_settings
from core.store import Store
from pipelines.demo import build_demo_city


def _timed(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run() -> list[dict]:
    from dashboard.app import create_app

    with tempfile.TemporaryDirectory(prefix="yiwang-bench-") as tmp:
        settings = load_settings(data_dir=tmp, demo_sensors=50, demo_days=30)
        store = Store.open(settings.database_path)
        try:
            build_demo_city(store, settings, progress=False)
            _key, secret = api_keys.create_api_key(store, None, "bench", per_minute=10000)
            app = create_app(store, settings)
            app.server.config.update(OPEN311_IP_LIMIT="100000/minute",
                                     OPEN311_POST_LIMIT="100000/minute")
            client = app.server.test_client()
            listed = client.get("/open311/v2/requests.json").json
            code = listed[0]["service_request_id"]
            lon, lat = listed[0]["long"], listed[0]["lat"]
            list_s = _timed(lambda: client.get("/open311/v2/requests.json"))
            one_s = _timed(lambda: client.get(f"/open311/v2/requests/{code}.json"))
            view_s = _timed(lambda: public.public_view(store, code))
            post_s = _timed(lambda: client.post("/open311/v2/requests.json", data={
                "api_key": secret, "service_code": "garbage_overflow", "lat": lat,
                "long": lon, "description": "bench"}))
        finally:
            store.close()
    buf = io.BytesIO()
    base = Image.radial_gradient("L").resize((4000, 3000))
    Image.merge("RGB", (base, base.rotate(90, expand=False), base)).save(buf, "JPEG", quality=95)
    photo = buf.getvalue()
    photo_s = _timed(lambda: public.clean_photo(photo), repeat=3)
    note = f"{settings.demo_incidents} incidents in the city"
    return [
        {"name": "open311 GET requests.json", "value": list_s, "unit": "s",
         "note": f"{len(listed)} rows (90 days, max 1000); {note}"},
        {"name": "open311 GET requests/{id}.json", "value": one_s, "unit": "s", "note": note},
        {"name": "open311 POST requests.json", "value": post_s, "unit": "s",
         "note": "validate, route, store, audit"},
        {"name": "public_view by tracking code", "value": view_s, "unit": "s", "note": note},
        {"name": "clean 12 MP photo", "value": photo_s, "unit": "s",
         "note": f"{len(photo) / 1e6:.1f} MB JPEG → ≤2048 px, no metadata"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<34} {row['value']:.4f} {row['unit']}  {row['note']}")
