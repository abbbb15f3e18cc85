"""Weekly turno series across daylight-saving changes: every occurrence keeps the local wall-clock hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.builders import Builders

# Europe/Madrid (ZONA_HORARIA's default) in 2027: summer time from Sunday 28 March 02:00 (to 03:00), winter
# time from Sunday 31 October 03:00 (back to 02:00).
SABADO, DOMINGO = 5, 6
MADRID = ZoneInfo("Europe/Madrid")


def _series(client: FlaskClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.get_json()
    data = response.get_json()
    items = data["ocurrencias"] if path.endswith("/comprobar") else data["items"]
    return [(i["inicio"], i["fin"]) for i in items]


def _instants(pairs: list[tuple[str, str]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in pairs]


def _check_and_create(client: FlaskClient, build: Builders, body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """The dry run and the create answer the same occurrences, the ones expected (compared as instants)."""
    headers = build.headers(build.usuario(2))
    efectivo = build.efectivo()
    body = {"efectivo_id": efectivo.id} | body
    want = _instants(expected)
    assert _instants(_series(client, headers, "/api/v1/turnos/comprobar", body)) == want
    assert _instants(_series(client, headers, "/api/v1/turnos", body)) == want


def test_night_shift_across_the_spring_change_ends_at_its_wall_clock_hour_every_week(app: Flask, client: FlaskClient, build: Builders) -> None:
    # The reviewer's request: 22:00-06:00 on Saturdays, the first night being the one the clocks go forward.
    body = {"inicio": "2027-03-27T22:00:00+01:00", "fin": "2027-03-28T06:00:00+02:00", "repetir": {"hasta": "2027-04-12T00:00:00Z", "dias_semana": [SABADO]}}
    _check_and_create(
        client,
        build,
        body,
        [
            ("2027-03-27T22:00:00+01:00", "2027-03-28T06:00:00+02:00"),  # 7 h: the night loses an hour
            ("2027-04-03T22:00:00+02:00", "2027-04-04T06:00:00+02:00"),
            ("2027-04-10T22:00:00+02:00", "2027-04-11T06:00:00+02:00"),
        ],
    )


def test_night_shift_across_the_autumn_change_ends_at_its_wall_clock_hour_every_week(app: Flask, client: FlaskClient, build: Builders) -> None:
    body = {"inicio": "2027-10-30T22:00:00+02:00", "fin": "2027-10-31T06:00:00+01:00", "repetir": {"hasta": "2027-11-15T00:00:00Z", "dias_semana": [SABADO]}}
    _check_and_create(
        client,
        build,
        body,
        [
            ("2027-10-30T22:00:00+02:00", "2027-10-31T06:00:00+01:00"),  # 9 h: the night gains an hour
            ("2027-11-06T22:00:00+01:00", "2027-11-07T06:00:00+01:00"),
            ("2027-11-13T22:00:00+01:00", "2027-11-14T06:00:00+01:00"),
        ],
    )


@pytest.mark.parametrize(
    ("inicio", "fin", "hasta", "expected"),
    [
        (  # spring: the Sunday 01:00-05:00 shift straddles the skipped hour and is 3 h that night, 4 h after
            "2027-03-28T01:00:00+01:00",
            "2027-03-28T05:00:00+02:00",
            "2027-04-12T00:00:00Z",
            [
                ("2027-03-28T01:00:00+01:00", "2027-03-28T05:00:00+02:00"),
                ("2027-04-04T01:00:00+02:00", "2027-04-04T05:00:00+02:00"),
                ("2027-04-11T01:00:00+02:00", "2027-04-11T05:00:00+02:00"),
            ],
        ),
        (  # autumn: 5 h that night, 4 h after
            "2027-10-31T01:00:00+02:00",
            "2027-10-31T05:00:00+01:00",
            "2027-11-15T00:00:00Z",
            [
                ("2027-10-31T01:00:00+02:00", "2027-10-31T05:00:00+01:00"),
                ("2027-11-07T01:00:00+01:00", "2027-11-07T05:00:00+01:00"),
                ("2027-11-14T01:00:00+01:00", "2027-11-14T05:00:00+01:00"),
            ],
        ),
    ],
    ids=["spring", "autumn"],
)
def test_shift_within_one_day_across_the_change_keeps_its_wall_clock_hours(
    app: Flask, client: FlaskClient, build: Builders, inicio: str, fin: str, hasta: str, expected: list[tuple[str, str]]
) -> None:
    _check_and_create(client, build, {"inicio": inicio, "fin": fin, "repetir": {"hasta": hasta, "dias_semana": [DOMINGO]}}, expected)


def test_first_occurrence_sent_across_the_change_sets_the_hours_of_the_others(app: Flask, client: FlaskClient, build: Builders) -> None:
    # The first night is the spring one; the weeks before the change are not in the series, the hours are.
    body = {"inicio": "2027-03-27T22:00:00+01:00", "fin": "2027-03-28T06:00:00+02:00", "repetir": {"hasta": "2027-11-01T00:00:00Z", "dias_semana": [SABADO]}}
    pairs = _series(client, build.headers(build.usuario(2)), "/api/v1/turnos/comprobar", body | {"efectivo_id": build.efectivo().id})
    assert len(pairs) == 32  # 27 March to 30 October
    for inicio, fin in pairs:
        start, end = datetime.fromisoformat(inicio).astimezone(MADRID), datetime.fromisoformat(fin).astimezone(MADRID)
        assert (start.strftime("%a %H:%M"), end.strftime("%a %H:%M")) == ("Sat 22:00", "Sun 06:00"), (inicio, fin)
        # Real hours (in UTC: subtracting two datetimes of one ZoneInfo compares their wall clocks).
        assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours={"2027-03-27": 7, "2027-10-30": 9}.get(inicio[:10], 8)), (inicio, fin)
    autumn = [p for p in pairs if p[0].startswith("2027-10-30")]
    assert autumn == [("2027-10-30T22:00:00+02:00", "2027-10-31T06:00:00+01:00")]


def test_skipped_and_repeated_wall_clock_times_are_read_as_documented(app: Flask, client: FlaskClient, build: Builders) -> None:
    headers = build.headers(build.usuario(2))
    efectivo = build.efectivo()

    def check(inicio: str, fin: str, hasta: str) -> list[tuple[str, str]]:
        body = {"efectivo_id": efectivo.id, "inicio": inicio, "fin": fin, "repetir": {"hasta": hasta, "dias_semana": [DOMINGO]}}
        return _series(client, headers, "/api/v1/turnos/comprobar", body)

    # 02:30 does not exist on 28 March: the shift starts when the clock jumps (03:00 summer time).
    assert (
        _instants(check("2027-03-21T02:30:00+01:00", "2027-03-21T04:00:00+01:00", "2027-03-29T00:00:00Z"))[1]
        == _instants([("2027-03-28T03:00:00+02:00", "2027-03-28T04:00:00+02:00")])[0]
    )
    # ... and one ending at 02:30 ends at the jump.
    assert (
        _instants(check("2027-03-21T00:00:00+01:00", "2027-03-21T02:30:00+01:00", "2027-03-29T00:00:00Z"))[1]
        == _instants([("2027-03-28T00:00:00+01:00", "2027-03-28T03:00:00+02:00")])[0]
    )
    # A shift wholly inside the skipped hour does not happen that night; the other weeks it does.
    inside = check("2027-03-21T02:10:00+01:00", "2027-03-21T02:50:00+01:00", "2027-04-05T00:00:00Z")
    assert [a[:10] for a, _ in inside] == ["2027-03-21", "2027-04-04"]
    # 02:30 happens twice on 31 October: the first time (summer time) is the one.
    assert (
        _instants(check("2027-10-24T02:30:00+02:00", "2027-10-24T04:00:00+02:00", "2027-11-01T00:00:00Z"))[1]
        == _instants([("2027-10-31T02:30:00+02:00", "2027-10-31T04:00:00+01:00")])[0]
    )
    # Sent as the second 02:30 on the night itself, the first occurrence is exactly what was sent.
    assert check("2027-10-31T02:30:00+01:00", "2027-10-31T04:00:00+01:00", "2027-11-08T00:00:00Z")[0] == (
        "2027-10-31T02:30:00+01:00",
        "2027-10-31T04:00:00+01:00",
    )


def test_shift_ending_at_an_earlier_wall_clock_time_cannot_repeat_by_weekday(app: Flask, client: FlaskClient, build: Builders) -> None:
    # 02:30 summer time to 02:10 winter time: 40 minutes, but backwards on the wall clock.
    body = {
        "efectivo_id": build.efectivo().id,
        "inicio": "2027-10-31T02:30:00+02:00",
        "fin": "2027-10-31T02:10:00+01:00",
        "repetir": {"hasta": "2027-12-01T00:00:00Z", "dias_semana": [DOMINGO]},
    }
    response = client.post("/api/v1/turnos/comprobar", json=body, headers=build.headers(build.usuario(2)))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["field"] == "body.fin"
    single = client.post("/api/v1/turnos/comprobar", json=body | {"repetir": None}, headers=build.headers(build.usuario(2)))
    assert single.status_code == 200 and len(single.get_json()["ocurrencias"]) == 1


def test_shift_longer_than_a_day_on_the_wall_clock_cannot_repeat_on_several_weekdays(app: Flask, client: FlaskClient, build: Builders) -> None:
    # Saturday 06:00 to Sunday 07:00 is 24 real hours the night clocks go forward, but 25 on the wall clock:
    # every other weekend its Saturday and Sunday shifts would overlap by an hour.
    body = {
        "efectivo_id": build.efectivo().id,
        "inicio": "2027-03-27T06:00:00+01:00",
        "fin": "2027-03-28T07:00:00+02:00",
        "repetir": {"hasta": "2027-04-20T00:00:00Z", "dias_semana": [SABADO, DOMINGO]},
    }
    response = client.post("/api/v1/turnos/comprobar", json=body, headers=build.headers(build.usuario(2)))
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "body.repetir.dias_semana"
