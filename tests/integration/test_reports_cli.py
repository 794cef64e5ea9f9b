"""`pledges report ...` and `pledges apikey list|revoke`: the same figures as the API."""

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing.cli import app
from tests.reports_ledger import Ledger, api_key, seed_ledger

PERIOD = ["--from", "2026-07-01", "--to", "2026-10-31"]
runner = CliRunner()


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


@pytest.mark.parametrize("name", ["summary", "revenue", "movement", "recovery", "attribution"])
def test_report_command_prints_what_the_api_answers(
    client: TestClient, db: Session, ledger: Ledger, name: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    params = {"from": "2026-07-01", "to": "2026-10-31"}

    as_csv = runner.invoke(app, ["report", name, *PERIOD, "--format", "csv"])
    as_json = runner.invoke(app, ["report", name, *PERIOD, "--format", "json"])

    assert as_csv.exit_code == 0, as_csv.output
    api_csv = client.get(f"/v1/reports/{name}", headers=headers, params=params | {"format": "csv"})
    assert as_csv.stdout.replace("\r\n", "\n") == api_csv.text.replace("\r\n", "\n")
    api_json = client.get(f"/v1/reports/{name}", headers=headers, params=params).json()
    assert orjson.loads(as_json.stdout) == api_json


def test_report_table_shows_money_in_major_units(ledger: Ledger) -> None:
    result = runner.invoke(
        app, ["report", "revenue", *PERIOD, "--currency", "eur", "--format", "table"]
    )

    assert result.exit_code == 0
    august = next(line for line in result.stdout.splitlines() if "2026-08-01" in line)
    assert august.split() == [
        "2026-08-01", "eur", "3", "€75.00", "€2.00", "€0.00", "€3.08", "0", "€69.92",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["report", "revenue", "--from", "July"], "from must be a date like 2026-10-31."),
        (["report", "movement", "--currency", "xyz"],
         "currency must be a three-letter code we know, such as EUR."),
        (["report", "revenue", "--granularity", "hour"], "granularity must be day, week or month."),
    ],
)  # fmt: skip
def test_report_command_refuses_bad_input_with_a_message(
    db: Session, arguments: list[str], message: str
) -> None:
    result = runner.invoke(app, arguments)

    assert result.exit_code == 2
    assert message in result.stderr


def test_apikey_list_and_revoke(db: Session) -> None:
    created = runner.invoke(app, ["apikey", "create", "--role", "admin", "--name", "Finance desk"])
    key = created.stdout.strip().splitlines()[-1]

    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0
    (line,) = listed.stdout.strip().splitlines()
    assert line.split("\t")[:4] == ["1", key[:10] + "…", "admin", "Finance desk"]
    assert line.endswith("never used\tactive")
    assert key not in listed.stdout

    revoked = runner.invoke(app, ["apikey", "revoke", "1"])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == "revoked API key 1"
    assert "\trevoked " in runner.invoke(app, ["apikey", "list"]).stdout

    again = runner.invoke(app, ["apikey", "revoke", "1"])
    assert again.exit_code == 1
    assert "no active API key with id 1" in again.stderr
