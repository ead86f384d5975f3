-- The DuckDB peer of `cafe-etl transform`: the same export in, the same four
-- tables out, in plain SQL. One script for every DuckDB the benchmarks run:
-- Python's duckdb natively (benches/peers/pipelines.py) and DuckDB-wasm in
-- Node and Chromium (benches/wasm-bench-common.mjs). The host replaces
-- @INPUT@ with the file(s) to read, runs the script, then writes each
-- out_<table> view as gzip CSV without a header: natively one file per input
-- file (COPY ... PARTITION_BY (part), the batch), in WebAssembly one
-- in-memory file (the column part left out).
--
-- What it does, as `transform` does: reads the 7-column headerless CSV
-- without the customer name and card number (never projected), validates
-- each row (the timestamp parses as a real date and time, the total and
-- every item price are money with at most 2 decimals, the payment is CASH or
-- CARD, the store is not empty, every basket item has the `Size Name[ -
-- Flavour] - price` shape, the items add up exactly to the total), splits
-- each basket into items (size, name, flavour, price), folds identical items
-- of a basket into one line with a quantity, and writes stores, products,
-- transactions and basket_items as gzip CSV without a header.
--
-- Where it does less than `transform` (said so in the README too):
--   * ids are md5 hex of the content (and, for a transaction, its row
--     number), not UUID v5 over SHA-1 with an occurrence number, so the same
--     sale moved to another line gets another id;
--   * the batch id is the file name, not the SHA-256 of the file's bytes;
--   * only the current export format (`dd/mm/yyyy HH:MM`, comma baskets):
--     no legacy-2020 layout, no header or blank lines, no Windows-1252
--     fallback, no masking of card-like digits in messages; a row that is
--     not 7 fields stops the run instead of being rejected;
--   * rejected rows are counted, not written to a reject file with their
--     issues (the generated exports have none), and there is no report
--     (summary, preview);
--   * no order is promised in the output files; `transform` keeps the input
--     order.

CREATE OR REPLACE TEMP TABLE raw AS
SELECT
  parse_filename(filename) AS batch_id,
  -- The row's number over all files read (ROW_NUMBER() OVER () keeps the
  -- read order: deterministic, unlike a partitioned window).
  row_number() OVER () AS line,
  ts, store, basket, total, payment
FROM read_csv(@INPUT@,
  header = false, delim = ',', quote = '"', escape = '"', filename = true,
  columns = {'ts': 'VARCHAR', 'store': 'VARCHAR', 'customer_name': 'VARCHAR',
             'basket': 'VARCHAR', 'total': 'VARCHAR', 'payment': 'VARCHAR',
             'card_number': 'VARCHAR'});

-- Every basket item, with the parts of its text.
CREATE OR REPLACE TEMP TABLE items AS
SELECT line,
  regexp_extract(item, '^(?:(Regular|Large) )?(.+?)(?: - (.+?))? - ([0-9]+(?:\.[0-9]{1,2})?)$',
                 ['size', 'name', 'flavour', 'price']) AS p
FROM (SELECT line, unnest(string_split(basket, ', ')) AS item FROM raw);

-- Per row: are all items well formed, and what do they add up to (pence).
CREATE OR REPLACE TEMP TABLE sums AS
SELECT line, count(*) AS item_count, bool_and(p.price <> '') AS items_ok,
  sum(CASE WHEN p.price <> '' THEN round(CAST(p.price AS DECIMAL(18, 2)) * 100) END) AS items_pence
FROM items GROUP BY line;

-- The valid transactions; the others are only counted (SELECT count(*) FROM rejected).
CREATE OR REPLACE TEMP TABLE tx AS
SELECT r.batch_id, r.line, r.store, r.payment, s.item_count,
  try_strptime(r.ts, '%d/%m/%Y %H:%M') AS occurred_at,
  CAST(r.total AS DECIMAL(18, 2)) AS total_price,
  md5(concat_ws(chr(31), 'transaction', r.batch_id, r.line, r.store, r.ts, r.payment, r.total, r.basket)) AS transaction_id
FROM raw r JOIN sums s USING (line)
WHERE try_strptime(r.ts, '%d/%m/%Y %H:%M') IS NOT NULL
  AND regexp_full_match(r.total, '[0-9]+(\.[0-9]{1,2})?')
  AND r.payment IN ('CASH', 'CARD')
  AND coalesce(trim(r.store), '') <> ''
  AND s.items_ok
  AND s.items_pence = round(CAST(r.total AS DECIMAL(18, 2)) * 100);

CREATE OR REPLACE TEMP VIEW rejected AS
SELECT batch_id, line FROM raw ANTI JOIN tx USING (line);

CREATE OR REPLACE TEMP VIEW out_stores AS
SELECT DISTINCT batch_id AS part, md5('store' || chr(31) || store) AS store_id, store AS store_name FROM tx;

CREATE OR REPLACE TEMP VIEW out_products AS
SELECT DISTINCT t.batch_id AS part,
  md5(concat_ws(chr(31), 'product', i.p.size, i.p.name, i.p.flavour)) AS product_id,
  i.p.size AS size, i.p.name AS name, i.p.flavour AS flavour
FROM items i JOIN tx t USING (line);

CREATE OR REPLACE TEMP VIEW out_transactions AS
SELECT batch_id AS part, transaction_id, md5('store' || chr(31) || store) AS store_id,
  strftime(occurred_at, '%Y-%m-%d %H:%M:%S') AS occurred_at, payment AS payment_method,
  total_price, item_count, NULL AS customer_key, batch_id
FROM tx;

CREATE OR REPLACE TEMP VIEW out_basket_items AS
SELECT part, transaction_id, product_id, count(*) AS quantity, price AS unit_price,
  price * count(*) AS line_total
FROM (SELECT t.batch_id AS part, t.transaction_id,
        md5(concat_ws(chr(31), 'product', i.p.size, i.p.name, i.p.flavour)) AS product_id,
        CAST(i.p.price AS DECIMAL(18, 2)) AS price
      FROM items i JOIN tx t USING (line))
GROUP BY part, transaction_id, product_id, price;
