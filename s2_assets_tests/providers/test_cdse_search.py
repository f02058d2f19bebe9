"""CDSE catalogue search against the stand-in: the query we send, paging, window splitting,
record parsing, retries, and baseline filters on the result."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from s2_assets.errors import TileIdError
from s2_assets.products import ProductName
from s2_assets.providers.base import filter_records
from s2_assets.providers.cdse import CdseCatalogueError, build_filter, parse_product
from s2_assets_tests.cdse_standin import CdseStandin
from s2_assets_tests.providers.cdse_odata import ODataError, parse_filter
from s2_assets_tests.providers.conftest import SERIES, SleepRecorder, make_provider

JANUARY = (date(2024, 1, 1), date(2024, 1, 31))


def test_search_sends_the_documented_query_and_parses_records(
    cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path]
) -> None:
    provider = make_provider(cdse, sleeps)
    records = provider.search("40KCB", "L2A", *JANUARY)

    (query,) = cdse.stats.searches
    assert query["$orderby"] == ["ContentDate/Start asc"]
    assert query["$top"] == ["1000"]
    assert query["$expand"] == ["Attributes"]
    assert query["$filter"] == [
        "Collection/Name eq 'SENTINEL-2' and "
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        "att/OData.CSC.StringAttribute/Value eq 'S2MSI2A') and "
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'tileId' and "
        "att/OData.CSC.StringAttribute/Value eq '40KCB') and "
        "ContentDate/Start ge 2024-01-01T00:00:00.000Z and "
        "ContentDate/Start lt 2024-02-01T00:00:00.000Z"
    ]
    (record,) = records
    served = cdse.by_name(ProductName.parse(cdse_zips["l2a"].name).id)
    assert record.product_id == served.name.id
    assert record.level == "L2A" and record.tile == "40KCB" and record.baseline == "05.10"
    assert record.sensing_time == datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)
    assert record.cloud_cover == 20.0
    assert record.size == len(served.body)
    assert record.online is True
    assert record.remote_id == served.id
    assert record.location == f"{cdse.download_url}/Products({served.id})/$value"
    assert set(record.checksums) == {"MD5", "BLAKE3"}
    assert record.provider == "cop_dataspace"


def test_search_filters_tile_level_dates_and_cloud(
    cdse: CdseStandin, sleeps: SleepRecorder
) -> None:
    provider = make_provider(cdse, sleeps)
    january = provider.search("40KCB", "L1C", *JANUARY)
    # Two baselines of the 1 January datatake, then series products up to 31 January.
    days = [r.date for r in january]
    assert days[:2] == [date(2024, 1, 1)] * 2
    assert days[2:] == [s.date() for s in SERIES if s.date() <= date(2024, 1, 31)]
    assert all(r.tile == "40KCB" and r.level == "L1C" for r in january)
    # The end day is inclusive: a product sensed at 06:35 on that day is found.
    one_day = provider.search("40KCB", "L1C", SERIES[0].date(), SERIES[0].date())
    assert [r.sensing_time for r in one_day] == [SERIES[0]]
    clear = provider.search("40KCB", "L1C", *JANUARY, max_cloud=30.0)
    assert {r.cloud_cover for r in clear} == {10.0, 20.0, 30.0}
    assert "cloudCover" in cdse.stats.searches[-1]["$filter"][0]
    assert provider.search("40KCA", "L1C", *JANUARY)[0].tile == "40KCA"


def test_empty_result_is_an_empty_list(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    provider = make_provider(cdse, sleeps)
    assert provider.search("40KCB", "L1C", date(2023, 1, 1), date(2023, 3, 1)) == []


@pytest.mark.parametrize("key", ["@odata.nextLink", "@OData.nextLink"])
def test_paging_follows_next_link_across_three_pages(
    cdse: CdseStandin, sleeps: SleepRecorder, key: str
) -> None:
    cdse.faults.next_link_key = key
    provider = make_provider(cdse, sleeps, page_size=3)
    records = provider.search("40KCB", "L1C", date(2024, 1, 1), date(2024, 2, 29))
    assert len(records) == 9  # two baselines on 1 January + seven series products
    assert len({r.product_id for r in records}) == 9
    assert [q.get("$skip") for q in cdse.stats.searches] == [None, ["3"], ["6"]]


def test_long_window_is_split_by_date(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    provider = make_provider(cdse, sleeps, window_days=10)
    records = provider.search("40KCB", "L1C", date(2024, 1, 1), date(2024, 2, 29))
    assert len(records) == 9
    starts = [q["$filter"][0].split("ContentDate/Start ge ")[1][:10] for q in cdse.stats.searches]
    assert starts == ["2024-01-01", "2024-01-11", "2024-01-21", "2024-01-31", "2024-02-10",
                      "2024-02-20"]  # fmt: skip


def test_window_needing_skip_past_the_limit_is_split(
    cdse: CdseStandin, sleeps: SleepRecorder
) -> None:
    cdse.faults.skip_limit = 2
    provider = make_provider(cdse, sleeps, page_size=2, skip_limit=2)
    records = provider.search("40KCB", "L1C", date(2024, 1, 1), date(2024, 2, 29))
    assert len(records) == 9
    assert all(int(q.get("$skip", ["0"])[0]) <= 2 for q in cdse.stats.searches)
    assert len({q["$filter"][0] for q in cdse.stats.searches}) > 1


def test_baseline_filters_apply_to_cdse_rows(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    records = make_provider(cdse, sleeps).search("40KCB", "L1C", date(2024, 1, 1), date(2024, 1, 1))
    assert sorted(r.baseline for r in records) == ["05.09", "05.10"]
    (newest,) = filter_records(records, keep_max_baseline=True)
    assert newest.baseline == "05.10"
    (older,) = filter_records(records, pb_max=5.09)
    assert older.baseline == "05.09"


def test_5xx_and_malformed_json_are_retried(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    cdse.faults.search_errors = [500, 503]
    cdse.faults.malformed_json = 1
    records = make_provider(cdse, sleeps).search("40KCB", "L2A", *JANUARY)
    assert len(records) == 1
    assert len(cdse.stats.searches) == 4
    assert len(sleeps.calls) == 3


def test_persistent_failure_names_the_search(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    cdse.faults.malformed_json = 10
    with pytest.raises(CdseCatalogueError, match=r"tile 40KCB L2A .* 3 tries: reply is not JSON"):
        make_provider(cdse, sleeps, search_retries=2).search("40KCB", "L2A", *JANUARY)
    assert len(cdse.stats.searches) == 3


def test_rejected_query_is_not_retried(cdse: CdseStandin, sleeps: SleepRecorder) -> None:
    # page_size 1000 is our maximum; the stand-in (like CDSE) rejects $skip past its limit.
    cdse.faults.skip_limit = -1
    with pytest.raises(CdseCatalogueError, match=r"refused: HTTP 400 \(.*Invalid \$skip"):
        make_provider(cdse, sleeps).search("40KCB", "L2A", *JANUARY)
    assert len(cdse.stats.searches) == 1


def test_invalid_tile_and_level_are_refused_before_any_request(
    cdse: CdseStandin, sleeps: SleepRecorder
) -> None:
    provider = make_provider(cdse, sleeps)
    with pytest.raises(TileIdError, match="drop the leading 'T'"):
        provider.search("T40KCB", "L1C", *JANUARY)
    with pytest.raises(ValueError, match="valid: L1C, L2A"):
        provider.search("40KCB", "L3", *JANUARY)
    assert cdse.stats.searches == []


def test_parse_product_tolerates_catalogue_quirks() -> None:
    entry = {
        "Id": "abc",
        "Name": "S2B_MSIL2A_20240105T063511_N0510_R120_T40KCB_20240105T083511.SAFE",
        "ContentLength": 10,
        "Online": False,
        "Checksum": [{"Algorithm": "md5", "Value": "ABCDEF"}, {"Algorithm": "BLAKE3"}],
        "Attributes": [{"Name": "cloudCover", "Value": 3}],
    }
    record = parse_product(entry, download_url="https://x/odata/v1")
    assert record is not None
    assert record.online is False and record.cloud_cover == 3.0
    assert record.checksums == {"MD5": "abcdef"}
    assert parse_product({**entry, "Name": "S1A_IW_GRDH_1SDV_x.SAFE"}, download_url="u") is None
    with pytest.raises(CdseCatalogueError, match="S2B_MSIL2A_20240105"):
        parse_product({k: v for k, v in entry.items() if k != "Id"}, download_url="u")


def test_build_filter_with_cloud_limit() -> None:
    text = build_filter(
        "40KCB",
        "L1C",
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 1, tzinfo=UTC),
        max_cloud=30,
    )
    assert text.endswith(
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value le 30.00)"
    )


def test_standin_filter_grammar() -> None:
    entity = {
        "Name": "S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083511.SAFE",
        "Online": True,
        "ContentDate": {"Start": "2024-01-01T06:35:11.024Z"},
        "Attributes": [
            {"Name": "cloudCover", "Value": 22.5, "ValueType": "Double"},
            {"Name": "tileId", "Value": "40KCB", "ValueType": "String"},
        ],
    }

    def matches(text: str) -> bool:
        return parse_filter(text)({"entity": entity})

    assert matches("contains(Name,'_T40KCB_') and startswith(Name,'S2A_')")
    assert matches("not endswith(Name,'.zip') or Online eq false")
    assert not matches("(Online eq false or contains(Name,'_T40KCA_')) and true eq true")
    assert matches("ContentDate/Start lt 2024-01-01T06:35:12.000Z")
    assert not matches(
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value le 20.00)"
    )
    # A String attribute is not visible through the Double cast.
    assert not matches(
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'tileId' and "
        "att/OData.CSC.DoubleAttribute/Value eq '40KCB')"
    )
    for bad in ("Name eq", "Name like 'x'", "Nope eq 'x'", "contains(Name 'x')"):
        with pytest.raises(ODataError):
            matches(bad)
