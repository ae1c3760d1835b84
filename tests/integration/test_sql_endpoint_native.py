"""Native framed for the client's protocol revision (`client_protocol_version`): clickhouse-connect
(revision 54405: block info) and clickhouse-go, the Grafana plugin's driver (54460: block info and
a serialization byte per column), read what the SQL endpoint writes from chDB's revision-0 Native.
Every column type the walk over the data knows, in more than one block."""

import clickhouse_connect
import httpx

from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.sql_endpoint.server import SqlEndpoint

ROWS = 70_000
"""More than one block of chDB's output (65,409 rows at most each)."""
QUERY = (
    "SELECT number, toString(number) AS s, toLowCardinality(toString(number % 3)) AS lc, "
    "CAST(if(number % 2 = 1, NULL, number) AS Nullable(Int32)) AS n, [number, number + 1] AS arr, "
    "map('k', number) AS m, tuple(number, 'x') AS t, toDecimal256(number, 24) / 7 AS d, "
    "toDateTime(number, 'UTC') AS dt, toDateTime64(number, 3, 'UTC') AS dt64, toFixedString('ab', 2) AS fs, "
    "[toLowCardinality('a')] AS alc, toLowCardinality(toNullable(toString(number))) AS lcn, "
    "toDecimal64(1.5, 4) AS d64, toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS u, number % 2 = 0 AS b, "
    f"toFloat64(number) / 3 AS f FROM numbers({ROWS}) ORDER BY number"
)


def test_clickhouse_connect_reads_every_type_framed_for_its_revision(
    clickhouse: ClickhouseStore, endpoint: SqlEndpoint
) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=endpoint.port, database=clickhouse.settings.database, autogenerate_session_id=False
    )
    try:
        # its probe found block info where a server writes it, so it reads every query so framed
        assert client.protocol_version == 54405
        read = client.query(QUERY).result_rows
    finally:
        client.close()

    assert read == clickhouse.rows(QUERY)  # the store read directly, without the endpoint


def test_the_plugins_revision_adds_one_serialization_byte_per_column_and_block(endpoint: SqlEndpoint) -> None:
    def native(revision: int) -> bytes:
        params = {"default_format": "Native", "client_protocol_version": str(revision)}
        answer = httpx.post(f"http://127.0.0.1:{endpoint.port}/", params=params, content=QUERY, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.content

    plain, low_cardinality, plugin = native(0), native(54405), native(54460)

    blocks = low_cardinality.count(b"\x01\x00\x02\xff\xff\xff\xff\x00\x11")  # block info, then 17 columns
    assert blocks >= 2
    assert len(low_cardinality) == len(plain) + 8 * blocks
    assert len(plugin) == len(low_cardinality) + 17 * blocks
    assert plugin.count(b"\x06String\x00") >= blocks  # the column `s`: its type, then 0 (dense)


def test_a_type_the_endpoint_cannot_frame_is_an_error_not_a_misread(endpoint: SqlEndpoint) -> None:
    params = {"default_format": "Native", "client_protocol_version": "54460"}
    query = "SELECT CAST(1 AS Variant(UInt8, String)) AS v"

    answer = httpx.post(f"http://127.0.0.1:{endpoint.port}/", params=params, content=query, timeout=60)

    assert answer.status_code != 200
    assert "cannot send Variant columns in Native" in answer.text
