-- Analytics views: what sells, where, when. One file for Amazon Redshift
-- and PostgreSQL: it uses only SQL both speak (DATE_TRUNC, EXTRACT, CAST,
-- CASE, window functions). `cafe-etl sql ddl` prints it after the tables,
-- `cafe-etl load` applies it, `cafe-etl insights` and the Grafana dashboard
-- read it. Safe to run again.
--
-- Weeks start on Monday (DATE_TRUNC('week') in both). Times are the till's
-- local time. Money stays DECIMAL: sums of DECIMAL(10,2) are exact.
-- No view shows a customer key, only counts of them.

-- What: units and revenue per product per week.
CREATE OR REPLACE VIEW product_sales_weekly AS
SELECT CAST(DATE_TRUNC('week', t.occurred_at) AS DATE) AS week_start,
       TRIM(COALESCE(p.size || ' ', '') || p.name || COALESCE(' - ' || p.flavour, '')) AS product,
       p.size,
       p.name,
       p.flavour,
       SUM(b.quantity) AS units,
       SUM(b.line_total) AS revenue
FROM basket_items b
JOIN transactions t ON t.transaction_id = b.transaction_id
JOIN products p ON p.product_id = b.product_id
GROUP BY CAST(DATE_TRUNC('week', t.occurred_at) AS DATE), p.product_id, p.size, p.name, p.flavour;

-- The brief, question 1: coffees sold per type per week. The type is the
-- product name (Latte, Mocha, ...), all sizes and flavours together. The
-- till does not say which drinks are coffee, so every drink is listed.
CREATE OR REPLACE VIEW coffees_sold_per_type_weekly AS
SELECT week_start,
       name AS coffee_type,
       SUM(units) AS units,
       SUM(revenue) AS revenue
FROM product_sales_weekly
GROUP BY week_start, name;

-- Where: revenue and transactions per store per day.
CREATE OR REPLACE VIEW store_sales_daily AS
SELECT CAST(t.occurred_at AS DATE) AS day,
       s.store_name,
       COUNT(*) AS transactions,
       SUM(t.item_count) AS units,
       SUM(t.total_price) AS revenue
FROM transactions t
JOIN stores s ON s.store_id = t.store_id
GROUP BY CAST(t.occurred_at AS DATE), s.store_id, s.store_name;

-- Where: revenue and transactions per store per week.
CREATE OR REPLACE VIEW store_sales_weekly AS
SELECT CAST(DATE_TRUNC('week', t.occurred_at) AS DATE) AS week_start,
       s.store_name,
       COUNT(*) AS transactions,
       SUM(t.item_count) AS units,
       SUM(t.total_price) AS revenue
FROM transactions t
JOIN stores s ON s.store_id = t.store_id
GROUP BY CAST(DATE_TRUNC('week', t.occurred_at) AS DATE), s.store_id, s.store_name;

-- The brief, question 2: the best store of each day, by revenue. A tie
-- lists every store that shares first place.
CREATE OR REPLACE VIEW best_store_daily AS
SELECT day, store_name, revenue, transactions
FROM (SELECT day, store_name, revenue, transactions,
             RANK() OVER (PARTITION BY day ORDER BY revenue DESC) AS place
      FROM store_sales_daily) ranked
WHERE place = 1;

-- The brief, question 2: the best store of each week, by revenue.
CREATE OR REPLACE VIEW best_store_weekly AS
SELECT week_start, store_name, revenue, transactions
FROM (SELECT week_start, store_name, revenue, transactions,
             RANK() OVER (PARTITION BY week_start ORDER BY revenue DESC) AS place
      FROM store_sales_weekly) ranked
WHERE place = 1;

-- The brief, question 3: revenue from Hazelnut-flavoured drinks per week,
-- all drinks and stores together.
CREATE OR REPLACE VIEW hazelnut_revenue_weekly AS
SELECT week_start,
       SUM(units) AS units,
       SUM(revenue) AS revenue
FROM product_sales_weekly
WHERE LOWER(flavour) = 'hazelnut'
GROUP BY week_start;

-- The brief, question 4: revenue from Large Lattes per day, all stores
-- together. A Flavoured or Iced latte is another product.
CREATE OR REPLACE VIEW large_latte_revenue_daily AS
SELECT CAST(t.occurred_at AS DATE) AS day,
       SUM(b.quantity) AS units,
       SUM(b.line_total) AS revenue
FROM basket_items b
JOIN transactions t ON t.transaction_id = b.transaction_id
JOIN products p ON p.product_id = b.product_id
WHERE LOWER(p.size) = 'large' AND LOWER(p.name) = 'latte'
GROUP BY CAST(t.occurred_at AS DATE);

-- When: transactions per hour of the day per store, over every day loaded;
-- per_day divides by the days the store sold anything in that hour.
CREATE OR REPLACE VIEW store_hourly_transactions AS
SELECT s.store_name,
       CAST(EXTRACT(HOUR FROM t.occurred_at) AS INTEGER) AS hour,
       COUNT(*) AS transactions,
       SUM(t.total_price) AS revenue,
       COUNT(DISTINCT CAST(t.occurred_at AS DATE)) AS days,
       ROUND(CAST(COUNT(*) AS DECIMAL(18,2)) / COUNT(DISTINCT CAST(t.occurred_at AS DATE)), 1) AS per_day
FROM transactions t
JOIN stores s ON s.store_id = t.store_id
GROUP BY s.store_id, s.store_name, CAST(EXTRACT(HOUR FROM t.occurred_at) AS INTEGER);

-- Average basket per store per week: value and items per transaction.
-- The cast widens the scale first, so rounding to pence rounds rather
-- than truncates on Redshift.
CREATE OR REPLACE VIEW average_basket_weekly AS
SELECT CAST(DATE_TRUNC('week', t.occurred_at) AS DATE) AS week_start,
       s.store_name,
       COUNT(*) AS transactions,
       ROUND(AVG(CAST(t.total_price AS DECIMAL(18,4))), 2) AS average_basket,
       ROUND(AVG(CAST(t.item_count AS DECIMAL(18,4))), 2) AS average_items
FROM transactions t
JOIN stores s ON s.store_id = t.store_id
GROUP BY CAST(DATE_TRUNC('week', t.occurred_at) AS DATE), s.store_id, s.store_name;

-- Payment mix per store per week.
CREATE OR REPLACE VIEW payment_mix_weekly AS
SELECT CAST(DATE_TRUNC('week', t.occurred_at) AS DATE) AS week_start,
       s.store_name,
       SUM(CASE WHEN t.payment_method = 'CASH' THEN 1 ELSE 0 END) AS cash_transactions,
       SUM(CASE WHEN t.payment_method = 'CARD' THEN 1 ELSE 0 END) AS card_transactions,
       SUM(CASE WHEN t.payment_method = 'CASH' THEN t.total_price ELSE CAST(0 AS DECIMAL(10,2)) END) AS cash_revenue,
       SUM(CASE WHEN t.payment_method = 'CARD' THEN t.total_price ELSE CAST(0 AS DECIMAL(10,2)) END) AS card_revenue,
       ROUND(100 * CAST(SUM(CASE WHEN t.payment_method = 'CARD' THEN 1 ELSE 0 END) AS DECIMAL(18,2)) / COUNT(*), 1) AS card_share_pct
FROM transactions t
JOIN stores s ON s.store_id = t.store_id
GROUP BY CAST(DATE_TRUNC('week', t.occurred_at) AS DATE), s.store_id, s.store_name;

-- New and returning customers per store per week, by customer_key (an
-- HMAC of the name: no name reaches the warehouse). A customer is new in
-- the week of their first visit to that store and returning in any later
-- week they come back; several visits in one week count once.
-- Transactions staged without a customer-key secret have no key and are
-- not counted.
CREATE OR REPLACE VIEW customers_new_returning_weekly AS
WITH visits AS (
    SELECT store_id,
           customer_key,
           CAST(DATE_TRUNC('week', occurred_at) AS DATE) AS week_start
    FROM transactions
    WHERE customer_key IS NOT NULL
    GROUP BY store_id, customer_key, CAST(DATE_TRUNC('week', occurred_at) AS DATE)
), firsts AS (
    SELECT store_id, customer_key, MIN(week_start) AS first_week
    FROM visits
    GROUP BY store_id, customer_key
)
SELECT v.week_start,
       s.store_name,
       SUM(CASE WHEN v.week_start = f.first_week THEN 1 ELSE 0 END) AS new_customers,
       SUM(CASE WHEN v.week_start > f.first_week THEN 1 ELSE 0 END) AS returning_customers
FROM visits v
JOIN firsts f ON f.store_id = v.store_id AND f.customer_key = v.customer_key
JOIN stores s ON s.store_id = v.store_id
GROUP BY v.week_start, s.store_id, s.store_name;
