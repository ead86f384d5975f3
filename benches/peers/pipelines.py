#!/usr/bin/env python3
"""The peers of `cafe-etl transform`, natively: what a user would pick instead.

    python3 benches/peers/pipelines.py pandas --out DIR FILE...
    python3 benches/peers/pipelines.py duckdb --out DIR FILE...

Both do the work of `transform` on exports in the current format: read the
7-column headerless CSV, drop the customer name and card number, validate
each row (timestamp, money, payment, store, basket item shape, items adding
up to the total), split every basket into items (size, name, flavour,
price), fold identical items of a basket into a line with a quantity, and
write the four tables stores, products, transactions and basket_items as
gzip CSV without a header, one set per input file (a batch), as
`transform` writes one per file. Each prints one JSON line:
{"peer", "rows_read", "rows_staged", "rows_rejected"}.

* `pandas` is the pipeline this project replaces, written the way pandas is
  meant to be used (vectorised string methods, explode, groupby; pyarrow-
  backed strings, which pandas 3 picks when pyarrow is installed).
* `duckdb` runs benches/peers/transform.sql (shared with DuckDB-wasm in the
  WebAssembly benchmarks) over all the files in one query, and writes each
  table PARTITION_BY the batch, on all cores.

Where they do less than `transform` is listed at the top of transform.sql;
the same holds for pandas (its ids are 128-bit content hashes from
pandas.util.hash_pandas_object, 32 hex digits, not UUIDs). gzip: DuckDB writes at its
fixed level (miniz's default, 6); pandas is given level 6 too (its own
default is 9, which would only make it slower); benches/peers/run prints the
staged sizes beside the times.

Install: pip install -r benches/requirements.txt
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["ts", "store", "customer_name", "basket", "total", "payment", "card_number"]
# `Size Name[ - Flavour] - price`: the size is optional in real exports.
ITEM = r"^(?:(?P<size>Regular|Large) )?(?P<name>.+?)(?: - (?P<flavour>.+?))? - (?P<price>[0-9]+(?:\.[0-9]{1,2})?)$"
MONEY = r"[0-9]+(?:\.[0-9]{1,2})?"
TABLES = ["stores", "products", "transactions", "basket_items"]


def run_duckdb(files, out):
    import duckdb

    con = duckdb.connect()
    sql = (HERE / "transform.sql").read_text()
    con.execute(sql.replace("@INPUT@", "[" + ", ".join(quote(f) for f in files) + "]"))
    for table in TABLES:
        # One file per batch under out/table/part=<file name>/, like
        # transform's out/table/<batch_id>.csv.gz; `part` itself is not written.
        con.execute(
            f"COPY out_{table} TO {quote(os.path.join(out, table))} "
            "(FORMAT csv, HEADER false, COMPRESSION gzip, PARTITION_BY (part), OVERWRITE_OR_IGNORE)"
        )
    read = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    rejected = con.execute("SELECT count(*) FROM rejected").fetchone()[0]
    return read, read - rejected


def quote(s):
    return "'" + str(s).replace("'", "''") + "'"


def run_pandas(files, out):
    import pandas as pd

    read = staged = 0
    for table in TABLES:
        os.makedirs(os.path.join(out, table), exist_ok=True)
    gzip = {"method": "gzip", "compresslevel": 6, "mtime": 0}

    def hex_ids(frame):
        # 128 bits as 32 hex digits (two keyed 64-bit hashes), as long as DuckDB's md5 ids.
        a, b = (pd.util.hash_pandas_object(frame, index=False, hash_key=k) for k in ("cafe-etl-bench-a", "cafe-etl-bench-b"))
        return a.map("{:016x}".format) + b.map("{:016x}".format)

    for f in files:
        batch = os.path.basename(f)
        # usecols: the name and card columns are skipped by the parser and never kept.
        df = pd.read_csv(
            f, header=None, names=COLUMNS, usecols=["ts", "store", "basket", "total", "payment"],
            dtype=str, keep_default_na=False, na_filter=False,
        )
        read += len(df)
        occurred = pd.to_datetime(df["ts"], format="%d/%m/%Y %H:%M", errors="coerce")
        total_ok = df["total"].str.fullmatch(MONEY)
        total_pence = (pd.to_numeric(df["total"], errors="coerce") * 100).round()

        # One row per basket item; the index still names the transaction's row.
        items = df["basket"].str.split(", ").explode().str.extract(ITEM)
        items["flavour"] = items["flavour"].fillna("")
        items["size"] = items["size"].fillna("")
        price_pence = (pd.to_numeric(items["price"], errors="coerce") * 100).round()
        by_row = price_pence.groupby(level=0)
        items_ok = items["price"].notna().groupby(level=0).all()
        valid = (
            occurred.notna() & total_ok & df["payment"].isin(["CASH", "CARD"])
            & (df["store"].str.strip() != "") & items_ok & (by_row.sum() == total_pence)
        )
        tx = df[valid]
        staged += len(tx)
        items = items[valid.reindex(items.index)]
        item_count = items.groupby(level=0).size()

        store_ids = hex_ids(tx[["store"]])
        stores = pd.DataFrame({"store_id": store_ids, "store_name": tx["store"]}).drop_duplicates()
        items["product_id"] = hex_ids(items[["size", "name", "flavour"]])
        products = items[["product_id", "size", "name", "flavour"]].drop_duplicates()
        tx_ids = hex_ids(tx.assign(line=tx.index, batch=batch))
        transactions = pd.DataFrame({
            "transaction_id": tx_ids,
            "store_id": store_ids,
            "occurred_at": occurred[valid],
            "payment_method": tx["payment"],
            "total_price": total_pence[valid] / 100,
            "item_count": item_count,
            "customer_key": "",
            "batch_id": batch,
        })
        items["transaction_id"] = tx_ids.reindex(items.index)
        lines = (
            items.groupby(["transaction_id", "product_id", "price"], sort=False).size()
            .rename("quantity").reset_index()
        )
        lines["line_total"] = pd.to_numeric(lines["price"]) * lines["quantity"]
        lines = lines[["transaction_id", "product_id", "quantity", "price", "line_total"]]

        for table, frame in zip(TABLES, [stores, products, transactions, lines]):
            frame.to_csv(
                os.path.join(out, table, batch + ".csv.gz"), header=False, index=False,
                float_format="%.2f", compression=gzip,
            )
    return read, staged


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer", choices=["pandas", "duckdb"])
    ap.add_argument("--out", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    files = []
    for f in a.files:
        files += sorted(str(p) for p in Path(f).glob("*.csv")) if os.path.isdir(f) else [f]
    os.makedirs(a.out, exist_ok=True)
    read, staged = (run_duckdb if a.peer == "duckdb" else run_pandas)(files, a.out)
    print(json.dumps({"peer": a.peer, "rows_read": read, "rows_staged": staged, "rows_rejected": read - staged}))


if __name__ == "__main__":
    sys.exit(main())
