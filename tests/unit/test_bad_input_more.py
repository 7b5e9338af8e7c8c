"""Unit tests of more bad input (issue 13 §5/§6): time zones, YAML alias bombs, future dates, a single
row, zip members outside the archive, and downloads that are not data files or have changed."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_config, synthetic_frame
from core.config import DataConfig, load_config, parse_config
from core.drift import rows_after
from core.errors import ConfigError, DataError
from core.tables import zip_member
from core.validation import validate_table
from tasks.ingest import download, load_table

SMALL_CSV = "day,x,y\n2024-01-01,1.5,10\n2024-01-02,2.5,20\n2024-01-03,3.5,30\n"
HTML_PAGE = "<!DOCTYPE html>\n<html><body><h1>Please sign in</h1></body></html>\n"


def config(**overrides: object):
    return make_config("unused.csv", **overrides)


def error_of(raw: pd.DataFrame, cfg, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        validate_table(raw, cfg, **kwargs)
    return str(info.value)


def hourly(rows: int = 48, tz: str | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=rows, freq="h", tz=tz),
            "x": range(rows),
            "y": range(rows),
        }
    )


# --- 1. time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris"])
def test_rows_after_aware_times_and_naive_trained_until(tz: str) -> None:
    data = hourly(tz="UTC").assign(day=lambda f: f["day"].dt.tz_convert(tz))
    newer = rows_after(data, "day", "2024-01-01 23:00:00")  # naive: taken as UTC
    assert len(newer) == 24
    assert newer["day"].min() == pd.Timestamp("2024-01-02", tz="UTC")


def test_rows_after_naive_times_and_aware_trained_until() -> None:
    newer = rows_after(hourly(), "day", "2024-01-02 00:00:00+01:00")  # 23:00 UTC
    assert len(newer) == 24 and newer["day"].min() == pd.Timestamp("2024-01-02")


def test_rows_after_text_times_with_several_offsets() -> None:
    data = pd.DataFrame({"day": ["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"], "y": [1, 2]})
    assert rows_after(data, "day", "2024-03-30 23:30:00")["y"].tolist() == [1, 2]  # naive: UTC
    assert rows_after(data, "day", "2024-03-31 00:30:00")["y"].tolist() == [2]
    assert rows_after(data, "day", "2024-03-31 01:30:00+01:00")["y"].tolist() == [2]


def test_rows_after_refuses_times_with_and_without_offsets() -> None:
    data = pd.DataFrame({"day": ["2024-01-01T00:00:00+01:00", "2024-01-02 00:00:00"], "y": [1, 2]})
    with pytest.raises(DataError, match="mixes dates with a UTC offset"):
        rows_after(data, "day", "2023-12-31")


def test_time_column_mixing_offsets_and_naive_dates_quotes_the_offending_values() -> None:
    raw = synthetic_frame(40, seed=1)
    raw["day"] = (raw["day"] + " 00:00:00").astype(object)
    raw.loc[:4, "day"] = raw.loc[:4, "day"] + "+01:00"
    before = raw.copy()
    message = error_of(raw, config())
    assert "time column 'day' mixes dates with a UTC offset (e.g. " in message
    assert f"'{raw['day'][0]}'" in message and f"'{raw['day'][5]}'" in message
    assert "write every date with its offset, or none" in message
    assert "not dates" not in message
    pd.testing.assert_frame_equal(raw, before)


def test_time_column_with_several_offsets_is_converted_to_utc() -> None:
    raw = synthetic_frame(40, seed=1)
    hours = pd.date_range("2024-03-30", periods=40, freq="h", tz="UTC").tz_convert("Europe/Paris")
    raw["day"] = [t.isoformat() for t in hours]  # +01:00, then +02:00 from the switch to summer time
    typed, schema = validate_table(raw, config())
    assert str(typed["day"].dt.tz) == "UTC"
    assert typed["day"].is_monotonic_increasing
    assert any("several UTC offsets" in note and "converted to UTC" in note for note in schema.notes)


def test_not_a_date_is_still_quoted_as_not_a_date() -> None:
    raw = synthetic_frame(40, seed=1)
    raw["day"] = raw["day"].astype(str).astype(object)
    raw.loc[3, "day"] = "soon"
    assert "1 values that are not dates (e.g. 'soon')" in error_of(raw, config())


# --- 2. YAML alias bombs ---------------------------------------------------------------------------


def billion_laughs(levels: int) -> str:
    lines = ["name: m", "task: regression", "target: y", "data: {source: d.csv}"]
    lines.append("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 9])
def test_billion_laughs_is_refused_fast(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(levels))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert time.perf_counter() - started < 1
    message = str(info.value)
    assert f"The config file {path} would expand to more than 100,000 values" in message
    assert "billion laughs" in message and "anchors and aliases" in message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "name: m\ntask: regression\ntarget: &t y\ndata: {source: d.csv}\n"
        f"features: {{drop: [{', '.join(['*t'] * 101)}]}}\n"
    )
    with pytest.raises(ConfigError, match="uses more than 100 YAML aliases"):
        load_config(path, {})


def test_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: m\ntask: regression\ntarget: y\ndata: {source: d.csv}\nloop: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"alias \*a inside its own anchor"):
        load_config(path, {})


def test_config_with_a_few_anchors_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: m\ntask: regression\ntarget: y\ndata: {source: d.csv}\n"
        "candidates:\n"
        "  random_forest: {params: &shared {random_state: 1}}\n"
        "  hist_gradient_boosting: {params: *shared}\n"
        "features: {drop: &gone [a, b], numeric: [x]}\n"
    )
    config = load_config(path, {})
    assert config.candidates["hist_gradient_boosting"].params == {"random_state": 1}
    assert config.features.drop == ["a", "b"]


# --- 3. data.max_future ----------------------------------------------------------------------------

NOW = pd.Timestamp("2024-06-01 12:00", tz="UTC")


def dated(days: list[str], tz: str | None = None) -> pd.DataFrame:
    raw = synthetic_frame(len(days), seed=1).drop(columns="day")
    day = pd.to_datetime(pd.Series(days), format="ISO8601")
    return raw.assign(day=day.dt.tz_localize(tz) if tz else day)


def test_max_future_default_and_validation() -> None:
    assert (
        parse_config(
            {"name": "m", "task": "regression", "target": "y", "data": {"source": "d"}}
        ).data.max_future
        == "1d"
    )
    for bad in ["soon", "-1d"]:
        with pytest.raises(ConfigError, match="'data.max_future'"):
            make_config("d.csv", data={"source": "d.csv", "max_future": bad})


@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_rows_dated_after_now_plus_max_future(tz: str | None) -> None:
    days = ["2024-05-01"] * 38 + ["2099-01-01", "2024-06-05"]
    message = error_of(dated(days, tz), config(), now=NOW)
    assert "time column 'day' has 2 rows dated after 2024-06-02 12:00:00+00:00" in message
    assert "(now plus data.max_future=1d), e.g. " in message and "2099-01-01" in message
    assert "correct the dates, or raise data.max_future" in message


def test_rows_within_max_future_pass() -> None:
    days = ["2024-05-01"] * 39 + ["2024-06-02 11:00"]
    typed, _ = validate_table(dated(days), config(), now=NOW)
    assert len(typed) == 40
    typed, _ = validate_table(dated(days, "UTC"), config(), now=NOW.tz_localize(None))
    assert len(typed) == 40
    later = dated(["2024-05-01"] * 39 + ["2024-07-01"])
    validate_table(later, config(data={"source": "d.csv", "max_future": "60d"}), now=NOW)
    with pytest.raises(DataError, match="1 row dated after"):
        validate_table(later, config(), now=NOW)


# --- 4. a single row -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_single_row_is_reported_as_too_few_rows(task: str) -> None:
    raw = synthetic_frame(1, seed=1, task=task)
    message = error_of(raw, config(task=task))
    assert "the data has only 1 row, and the split needs at least 67 (split.min_rows=10" in message
    assert "constant" not in message and "single class" not in message


def test_single_row_with_a_target_among_missing_ones() -> None:
    raw = synthetic_frame(3, seed=1)
    raw.loc[1:, "y"] = None
    message = error_of(raw, make_config("d.csv", split={}))
    assert "the data has only 1 row with a target, and the split needs at least 200" in message


# --- 5. zip members outside the archive ------------------------------------------------------------


def zipped(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, SMALL_CSV)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["../../x/hour.csv", "/abs/hour.csv", "a/../../hour.csv", "..\\..\\hour.csv"]
)
def test_zip_member_outside_the_archive_is_refused(name: str) -> None:
    with pytest.raises(DataError) as info:
        zip_member(zipped(name), "hour.csv", "bike.zip")
    message = str(info.value)
    assert f"holds hour.csv as {name!r}, a path outside the archive" in message
    assert "members with '..' or absolute paths are not read" in message
    assert "data.member names a plain file inside the archive" in message


def test_local_zip_with_escaping_member_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bike.zip").write_bytes(zipped("../../x/hour.csv"))
    with pytest.raises(DataError, match="a path outside the archive"):
        load_table(DataConfig(source=str(tmp_path / "bike.zip"), member="hour.csv"))
    assert not list(tmp_path.rglob("hour.csv"))


@pytest.mark.parametrize("member", ["../hour.csv", "a/../../hour.csv", "/etc/hour.csv", "..\\hour.csv"])
def test_config_member_with_dots_or_absolute_is_a_config_error(member: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config("d.zip", data={"source": "d.zip", "member": member})
    assert "'data.member'" in str(info.value) and "is not a plain file name" in str(info.value)
    assert make_config("d.zip", data={"source": "d.zip", "member": "hour.csv"}).data.member == "hour.csv"


# --- 6. downloads without sha256 -------------------------------------------------------------------


class VersionedHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` (path -> body, ETag, Last-Modified), answering 304 to a matching validator."""

    files: dict[str, tuple[bytes, str | None, str | None]] = {}
    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base signature
        pass

    def do_GET(self) -> None:
        VersionedHandler.seen.append({"path": self.path, **dict(self.headers)})
        if self.path not in self.files:
            self.send_error(404)
            return
        body, etag, modified = self.files[self.path]
        if (etag and self.headers.get("If-None-Match") == etag) or (
            modified and not etag and self.headers.get("If-Modified-Since") == modified
        ):
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        if etag:
            self.send_header("ETag", etag)
        if modified:
            self.send_header("Last-Modified", modified)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def httpd() -> Iterator[http.server.ThreadingHTTPServer]:
    VersionedHandler.files, VersionedHandler.seen = {}, []
    served = http.server.ThreadingHTTPServer(("127.0.0.1", 0), VersionedHandler)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.shutdown()
        served.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(httpd: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def files_in(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.mark.parametrize(
    ("body", "member", "reason"),
    [
        (HTML_PAGE, None, "an HTML or XML page starting '<!DOCTYPE html>"),
        ("\n  <html><body>Error</body></html>", "hour.csv", "an HTML or XML page starting '<html>"),
        ("Not Found\n", None, "its first line 'Not Found' has fewer than two columns"),
        ("day,x\n\xff\xfe", None, "not UTF-8 text"),
    ],
)
def test_download_that_is_not_a_data_file_is_refused_and_not_cached(
    server: str, tmp_path: Path, body: str, member: str | None, reason: str
) -> None:
    VersionedHandler.files["/data.csv"] = (body.encode("latin-1"), '"v1"', None)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        download(f"{server}/data.csv", None, member, cache)
    message = str(info.value)
    assert f"The server at {server}/data.csv returned something that is not a data file" in message
    assert reason in message and "nothing is cached" in message
    assert "--data PATH" in message
    assert files_in(cache) == []


def test_parquet_download_is_cached(server: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pd.DataFrame({"x": [1.0], "y": [2]}).to_parquet(buffer)
    VersionedHandler.files["/data.parquet"] = (buffer.getvalue(), '"p1"', None)
    VersionedHandler.files["/fake.parquet"] = (SMALL_CSV.encode(), '"p2"', None)
    path = download(f"{server}/data.parquet", None, None, tmp_path)
    assert pd.read_parquet(path)["y"].tolist() == [2]
    with pytest.raises(DataError, match="no PAR1 magic bytes"):
        download(f"{server}/fake.parquet", None, None, tmp_path)


def test_cached_download_is_revalidated_with_its_etag(server: str, tmp_path: Path) -> None:
    url = f"{server}/data.csv"
    VersionedHandler.files["/data.csv"] = (SMALL_CSV.encode(), '"v1"', None)
    path = download(url, None, None, tmp_path)
    assert path.read_text() == SMALL_CSV
    assert json.loads(path.with_name("data.csv.http.json").read_text()) == {"etag": '"v1"'}
    assert "If-None-Match" not in VersionedHandler.seen[0]

    # Same ETag: the server answers 304 and the cached copy stays (the body it holds is not sent).
    VersionedHandler.files["/data.csv"] = (b"day,x,y\n2030-01-01,0,0\n", '"v1"', None)
    assert download(url, None, None, tmp_path).read_text() == SMALL_CSV
    assert VersionedHandler.seen[1]["If-None-Match"] == '"v1"'

    # A new ETag: the new file replaces the cached one.
    changed = SMALL_CSV + "2024-01-04,4.5,40\n"
    VersionedHandler.files["/data.csv"] = (changed.encode(), '"v2"', None)
    assert download(url, None, None, tmp_path).read_text() == changed
    assert json.loads(path.with_name("data.csv.http.json").read_text()) == {"etag": '"v2"'}
    assert len(VersionedHandler.seen) == 3


def test_cached_download_is_revalidated_with_last_modified(server: str, tmp_path: Path) -> None:
    stamp = "Mon, 01 Jan 2024 00:00:00 GMT"
    VersionedHandler.files["/data.csv"] = (SMALL_CSV.encode(), None, stamp)
    download(f"{server}/data.csv", None, None, tmp_path)
    VersionedHandler.files["/data.csv"] = (b"day,x,y\n2030-01-01,0,0\n", None, stamp)
    assert download(f"{server}/data.csv", None, None, tmp_path).read_text() == SMALL_CSV
    assert VersionedHandler.seen[1]["If-Modified-Since"] == stamp


def test_cached_copy_is_kept_when_the_server_fails(
    server: str, httpd: http.server.ThreadingHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{server}/data.csv"
    VersionedHandler.files["/data.csv"] = (SMALL_CSV.encode(), '"v1"', None)
    download(url, None, None, tmp_path)
    VersionedHandler.files["/data.csv"] = (HTML_PAGE.encode(), '"v2"', None)
    with pytest.raises(DataError, match="not a data file"):
        download(url, None, None, tmp_path)
    del VersionedHandler.files["/data.csv"]  # 404 now
    assert download(url, None, None, tmp_path).read_text() == SMALL_CSV

    httpd.shutdown()
    httpd.server_close()
    with caplog.at_level("WARNING"):
        assert download(url, None, None, tmp_path).read_text() == SMALL_CSV
    assert f"Could not revalidate the cached download of {url}" in caplog.text
    with pytest.raises(DataError, match="there is no cached copy"):
        download(f"{server}/other.csv", None, None, tmp_path)
