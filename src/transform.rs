//! Stage 4: valid transactions to the star schema, with ids derived from
//! content.
//!
//! Every id is a UUID version 5 (SHA-1, RFC 9562) in the project's own
//! namespace, over a name built only from what the row says (never a
//! customer name or card number, never the row's position alone):
//!
//! | table        | name hashed |
//! |--------------|-------------|
//! | stores       | `store` + store name |
//! | products     | `product` + size, name, flavour |
//! | transactions | `transaction` + store, occurred_at, payment, total, every item, and an occurrence number |
//!
//! Two rows that differ only in name and card would hash alike, so the
//! occurrence number tells them apart: the count of identical rows before
//! this one in the same run of rows with one timestamp, and how many runs of
//! that timestamp came before. It depends on the content and its order, so
//! the same file gives the same ids on every run and machine; a header line
//! or a blank line added does not move them.
//!
//! Memory is bounded: the product and store caches and the timestamp-run
//! table have caps ([`Config`]). Past a cap, rows are still right, but a
//! product or store may be written more than once to its table (the loader
//! keeps one row per id) and the summary folds the rest into "other".

use crate::error::Error;
use crate::report::{
    format_pence, HourSummary, PreviewRow, ProductSummary, StoreSummary, Summary, TableCounts,
};
use crate::row::{CustomerKey, Item, Payment, Transaction, NO_TEXT_SLOT};
use rustc_hash::FxHashMap as HashMap;
use sha1::{Digest, Sha1};
use std::hash::BuildHasher;

/// Caps of the transform stage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Distinct products remembered per batch.
    pub max_products: usize,
    /// Distinct stores remembered per batch.
    pub max_stores: usize,
    /// Bytes of product and store text remembered per batch (names can be
    /// long in hostile input; this keeps memory bounded whatever they are).
    pub max_cache_bytes: usize,
    /// Distinct timestamps remembered for the occurrence number.
    pub max_timestamps: usize,
    /// Staged rows kept for the report's preview.
    pub preview_rows: usize,
    /// Products listed in the summary.
    pub top_products: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_products: 100_000,
            max_stores: 10_000,
            max_cache_bytes: 16 << 20,
            max_timestamps: 1 << 12,
            preview_rows: 20,
            top_products: 10,
        }
    }
}

/// The project's UUID namespace (a fixed random v4 UUID):
/// `5c0ffee0-9a4e-4c3b-8f1d-2f6b7a1e4d21`.
pub const NAMESPACE: [u8; 16] = [
    0x5c, 0x0f, 0xfe, 0xe0, 0x9a, 0x4e, 0x4c, 0x3b, 0x8f, 0x1d, 0x2f, 0x6b, 0x7a, 0x1e, 0x4d, 0x21,
];

/// A UUID in its 36-character text form.
pub type UuidText = [u8; 36];

/// UUID version 5 of `name` in [`NAMESPACE`], as text. The SHA-1 is
/// RustCrypto's (SHA-NI where the CPU has it, which uuid's own `v5` would
/// not use); the `uuid` crate sets the version and variant bits and writes
/// the text.
pub fn uuid5(name: &[u8]) -> UuidText {
    let mut h = Sha1::new();
    h.update(NAMESPACE);
    h.update(name);
    let d = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&d[..16]);
    let mut out = [0u8; 36];
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut out);
    out
}

/// The id of a store.
pub fn store_id(store: &str) -> UuidText {
    let mut name = Vec::with_capacity(6 + store.len());
    name.extend_from_slice(b"store\x1f");
    name.extend_from_slice(store.as_bytes());
    uuid5(&name)
}

/// The id of a product: (size, name, flavour) exactly as written.
pub fn product_id(size: &str, name: &str, flavour: &str) -> UuidText {
    let mut key = Vec::new();
    product_key(&mut key, size, name, flavour);
    uuid5(&key)
}

fn product_key(key: &mut Vec<u8>, size: &str, name: &str, flavour: &str) {
    key.clear();
    key.extend_from_slice(b"product\x1f");
    key.extend_from_slice(size.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(name.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(flavour.as_bytes());
}

/// A transaction row of the star schema.
#[derive(Clone, Debug)]
pub struct TransactionRow<'a> {
    /// Its id.
    pub transaction_id: &'a UuidText,
    /// The store's id.
    pub store_id: &'a UuidText,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub occurred_at: &'a [u8; 19],
    /// `CASH` or `CARD`.
    pub payment_method: &'a str,
    /// Total in pence.
    pub total_pence: i64,
    /// Units in the basket.
    pub item_count: u32,
    /// Pseudonymous customer, or none.
    pub customer_key: Option<&'a CustomerKey>,
}

/// Where the star schema's rows go (the staging writer, or a counter when
/// only checking).
pub trait StarSink {
    /// A store seen for the first time in the batch.
    fn store(&mut self, id: &UuidText, name: &str) -> Result<(), Error>;
    /// A product seen for the first time in the batch.
    fn product(
        &mut self,
        id: &UuidText,
        size: &str,
        name: &str,
        flavour: &str,
    ) -> Result<(), Error>;
    /// A transaction.
    fn transaction(&mut self, row: &TransactionRow<'_>, batch_id: &str) -> Result<(), Error>;
    /// Whether this sink writes rows at all; when not, the transaction id
    /// (a SHA-1 per row) is not computed.
    fn wants_rows(&self) -> bool {
        true
    }
    /// A line of a basket.
    fn basket_item(
        &mut self,
        transaction_id: &UuidText,
        product_id: &UuidText,
        quantity: u32,
        unit_pence: i64,
    ) -> Result<(), Error>;
}

/// A sink that only counts, for `check`.
#[derive(Debug, Default)]
pub struct CountingSink;

impl StarSink for CountingSink {
    fn wants_rows(&self) -> bool {
        false
    }
    fn store(&mut self, _: &UuidText, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn product(&mut self, _: &UuidText, _: &str, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn transaction(&mut self, _: &TransactionRow<'_>, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn basket_item(&mut self, _: &UuidText, _: &UuidText, _: u32, _: i64) -> Result<(), Error> {
        Ok(())
    }
}

struct ProductEntry {
    id: UuidText,
    size: Box<str>,
    name: Box<str>,
    flavour: Box<str>,
    quantity: u64,
    revenue: i64,
}

impl ProductEntry {
    fn new(id: UuidText, size: &str, name: &str, flavour: &str, price_pence: i64) -> ProductEntry {
        ProductEntry {
            id,
            size: size.into(),
            name: name.into(),
            flavour: flavour.into(),
            quantity: 1,
            revenue: price_pence,
        }
    }
}

struct StoreEntry {
    id: UuidText,
    transactions: u64,
    revenue: i64,
}

/// The products of one batch, numbered in order of first appearance, so
/// the transform stage finds a product it has seen by index instead of
/// hashing its parts for every item.
///
/// An item read from a remembered text ([`Item::text_slot`]) is numbered once
/// per text; others (legacy baskets, texts past the reader's cap) by a
/// lookup of their parts. Capped: past `cap` products or `max_bytes` of
/// their text, products are left unnumbered ([`NO_PRODUCT`]).
#[derive(Debug, Default)]
pub struct Menu {
    products: HashMap<Box<str>, u32>,
    /// Product number of each item text slot seen, [`UNSEEN`] before.
    by_text: Vec<u32>,
    key: String,
    cap: usize,
    /// Bytes of product text held, against `max_bytes`.
    bytes: usize,
    max_bytes: usize,
}

/// The number [`Menu::number`] gives a product once the menu is full.
pub const NO_PRODUCT: u32 = u32::MAX;

/// A slot of [`Menu::by_text`] not numbered yet.
const UNSEEN: u32 = u32::MAX - 1;

impl Menu {
    /// A menu numbering at most `cap` products, and holding at most
    /// `max_bytes` of their text.
    pub fn new(cap: usize, max_bytes: usize) -> Menu {
        Menu {
            cap,
            max_bytes,
            ..Menu::default()
        }
    }

    /// The number of a product, given its parts; [`NO_PRODUCT`] when full.
    pub fn number(&mut self, size: &str, name: &str, flavour: &str) -> u32 {
        self.key.clear();
        for (i, part) in [size, name, flavour].iter().enumerate() {
            if i > 0 {
                self.key.push('\x1f');
            }
            self.key.push_str(part);
        }
        if let Some(&n) = self.products.get(self.key.as_str()) {
            return n;
        }
        if self.products.len() >= self.cap || self.bytes + self.key.len() > self.max_bytes {
            return NO_PRODUCT;
        }
        self.bytes += self.key.len();
        let n = self.products.len() as u32;
        self.products.insert(self.key.as_str().into(), n);
        n
    }

    /// The number of an item's product (`basket` is the text the item
    /// points into): by its text slot when it has one and the slot was
    /// numbered before, else by [`Menu::number`].
    #[inline]
    pub fn number_item(&mut self, item: &Item, basket: &str) -> u32 {
        // `by_text` only holds slots under the cap, so NO_TEXT_SLOT (and any
        // slot past the cap) is never found here.
        match self.by_text.get(item.text_slot as usize) {
            Some(&n) if n != UNSEEN => n,
            _ => self.number_first(item, basket),
        }
    }

    /// [`Menu::number_item`] for an item whose slot is not numbered yet, or
    /// that has none: by its parts, remembered under its slot.
    #[inline(never)]
    fn number_first(&mut self, item: &Item, basket: &str) -> u32 {
        let (size, name, flavour) = item.parts(basket);
        let n = self.number(size, name, flavour);
        // Slots come from a reader capped like this menu; one past the cap
        // is treated as no slot, so `by_text` stays bounded.
        let slot = item.text_slot as usize;
        if item.text_slot != NO_TEXT_SLOT && slot < self.cap {
            if slot >= self.by_text.len() {
                self.by_text.resize(slot + 1, UNSEEN);
            }
            self.by_text[slot] = n;
        }
        n
    }
}

/// The transform stage at run time.
pub struct Transformer {
    config: Config,
    /// Numbers the batch's products.
    menu: Menu,
    /// Products numbered by the batch's menu, by number.
    numbered: Vec<Option<ProductEntry>>,
    /// Products past the menu's cap, by key.
    products: HashMap<Box<[u8]>, ProductEntry>,
    stores: HashMap<Box<str>, StoreEntry>,
    other_products: (u64, i64),
    other_stores: (u64, i64),
    cache_bytes: usize,
    /// Occurrence bookkeeping: the current timestamp run and its counts.
    run_ts: [u8; 19],
    run_number: u32,
    /// Copies seen of each content in the current run: a short list (runs
    /// are a few rows), and a map once a run grows long.
    run_counts: Vec<(u64, u32)>,
    run_counts_map: HashMap<u64, u32>,
    runs_per_ts: HashMap<[u8; 19], u32>,
    key: Vec<u8>,
    product_key: Vec<u8>,
    lines: Vec<(UuidText, i64, u32)>,
    /// Where each (product, price) is in `lines`, once a basket has more
    /// than [`LINES_SCANNED`] lines: a long basket costs one lookup per
    /// item, not a scan of the lines so far.
    line_index: HashMap<(UuidText, i64), u32>,
    counts: TableCounts,
    summary: Summary,
    by_hour: [(u64, i64); 24],
    first_at: Option<[u8; 19]>,
    last_at: Option<[u8; 19]>,
    preview: Vec<PreviewRow>,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("counts", &self.counts)
            .finish()
    }
}

impl Transformer {
    /// A transformer with the given caps.
    pub fn new(config: Config) -> Transformer {
        Transformer {
            menu: Menu::new(config.max_products, config.max_cache_bytes),
            config,
            numbered: Vec::new(),
            products: HashMap::default(),
            stores: HashMap::default(),
            other_products: (0, 0),
            other_stores: (0, 0),
            cache_bytes: 0,
            run_ts: [0; 19],
            run_number: 0,
            run_counts: Vec::new(),
            run_counts_map: HashMap::default(),
            runs_per_ts: HashMap::default(),
            key: Vec::with_capacity(256),
            product_key: Vec::with_capacity(64),
            lines: Vec::with_capacity(16),
            line_index: HashMap::default(),
            counts: TableCounts::default(),
            summary: Summary::default(),
            by_hour: [(0, 0); 24],
            first_at: None,
            last_at: None,
            preview: Vec::new(),
        }
    }

    /// Turns one valid transaction into star-schema rows, in five steps:
    /// its store, its products and basket lines, its id, its rows, and the
    /// summary.
    pub fn add(
        &mut self,
        tx: &Transaction<'_>,
        items: &[Item],
        batch_id: &str,
        sink: &mut impl StarSink,
    ) -> Result<(), Error> {
        let occurred_at = tx.occurred_at.to_bytes();
        let store_id = self.store(tx, sink)?;
        // Only a sink that writes rows needs the transaction's id, and so
        // its key; the basket lines are counted either way (the report's
        // basket_items count must not depend on the mode).
        let rows = sink.wants_rows();
        if rows {
            self.start_key(tx, &occurred_at);
        }
        self.fold_basket(tx, items, rows, sink)?;
        let transaction_id = match rows {
            true => self.transaction_id(&occurred_at),
            false => [b'0'; 36],
        };
        let row = TransactionRow {
            transaction_id: &transaction_id,
            store_id: &store_id,
            occurred_at: &occurred_at,
            payment_method: tx.payment.as_str(),
            total_pence: tx.total_pence,
            item_count: items.len() as u32,
            customer_key: tx.customer_key.as_ref(),
        };
        self.write_rows(&row, batch_id, sink)?;
        self.summarise(tx, items, occurred_at);
        Ok(())
    }

    /// The store's id: from the cache, or made, written and remembered (up
    /// to the caps) the first time the store is seen.
    #[inline(always)]
    fn store(&mut self, tx: &Transaction<'_>, sink: &mut impl StarSink) -> Result<UuidText, Error> {
        if let Some(e) = self.stores.get_mut(tx.store) {
            e.transactions += 1;
            e.revenue += tx.total_pence;
            return Ok(e.id);
        }
        let id = store_id(tx.store);
        sink.store(&id, tx.store)?;
        self.counts.stores += 1;
        if self.stores.len() < self.config.max_stores
            && self.cache_bytes + tx.store.len() <= self.config.max_cache_bytes
        {
            self.cache_bytes += tx.store.len();
            self.stores.insert(
                tx.store.into(),
                StoreEntry {
                    id,
                    transactions: 1,
                    revenue: tx.total_pence,
                },
            );
        } else {
            self.other_stores.0 += 1;
            self.other_stores.1 += tx.total_pence;
        }
        Ok(id)
    }

    /// Starts the transaction id's key with what the row says of itself:
    /// store, time, payment and total (see the module's table).
    #[inline]
    fn start_key(&mut self, tx: &Transaction<'_>, occurred_at: &[u8; 19]) {
        self.key.clear();
        self.key.extend_from_slice(b"transaction\x1f");
        self.key.extend_from_slice(tx.store.as_bytes());
        self.key.push(0x1f);
        self.key.extend_from_slice(occurred_at);
        self.key.push(0x1f);
        self.key.extend_from_slice(tx.payment.as_str().as_bytes());
        self.key.push(0x1f);
        self.key
            .extend_from_slice(itoa::Buffer::new().format(tx.total_pence).as_bytes());
    }

    /// Finds each item's product (writing new ones), folds the basket into
    /// lines of identical items ([`Transformer::fold_item`]), and, when
    /// `rows`, adds every item to the transaction id's key.
    #[inline(always)]
    fn fold_basket(
        &mut self,
        tx: &Transaction<'_>,
        items: &[Item],
        rows: bool,
        sink: &mut impl StarSink,
    ) -> Result<(), Error> {
        self.lines.clear();
        if !self.line_index.is_empty() {
            self.line_index.clear();
        }
        for item in items {
            self.fold_item(item, tx.basket, sink)?;
            if rows {
                let (size, name, flavour) = item.parts(tx.basket);
                self.key.push(0x1e);
                self.key.extend_from_slice(size.as_bytes());
                self.key.push(0x1f);
                self.key.extend_from_slice(name.as_bytes());
                self.key.push(0x1f);
                self.key.extend_from_slice(flavour.as_bytes());
                self.key.push(0x1f);
                self.key
                    .extend_from_slice(itoa::Buffer::new().format(item.price_pence).as_bytes());
            }
        }
        Ok(())
    }

    /// Counts an item in its product's summary and folds it into the
    /// basket's lines. A product seen before is found by the menu's number
    /// (an index: no hashing, not even the item's parts are looked at).
    #[inline(always)]
    fn fold_item(
        &mut self,
        item: &Item,
        basket: &str,
        sink: &mut impl StarSink,
    ) -> Result<(), Error> {
        let product = self.menu.number_item(item, basket);
        let id = match self.numbered.get_mut(product as usize) {
            Some(Some(e)) => {
                e.quantity += 1;
                e.revenue += item.price_pence;
                e.id
            }
            _ => self.first_of_product(item, basket, product, sink)?,
        };
        fold_line(&mut self.lines, &mut self.line_index, id, item.price_pence);
        Ok(())
    }

    /// The id of a product the first time its number is met (made, written
    /// and remembered), or of one the menu could not number.
    #[inline(never)]
    fn first_of_product(
        &mut self,
        item: &Item,
        basket: &str,
        product: u32,
        sink: &mut impl StarSink,
    ) -> Result<UuidText, Error> {
        let (size, name, flavour) = item.parts(basket);
        if product == NO_PRODUCT {
            return self.unnumbered_product(size, name, flavour, item.price_pence, sink);
        }
        let n = product as usize;
        if n >= self.numbered.len() {
            self.numbered.resize_with(n + 1, || None);
        }
        product_key(&mut self.product_key, size, name, flavour);
        let id = uuid5(&self.product_key);
        sink.product(&id, size, name, flavour)?;
        self.counts.products += 1;
        self.numbered[n] = Some(ProductEntry::new(id, size, name, flavour, item.price_pence));
        Ok(id)
    }

    /// Ends the key with the occurrence number (which copy of identical
    /// content this is, see the module's documentation) and hashes it.
    #[inline]
    fn transaction_id(&mut self, occurred_at: &[u8; 19]) -> UuidText {
        if *occurred_at != self.run_ts {
            self.start_run(occurred_at);
        }
        // A fixed-seed hash: the same content always meets the same counter.
        let hash = rustc_hash::FxBuildHasher.hash_one(&self.key);
        let copy = match self.run_counts.iter().position(|(k, _)| *k == hash) {
            Some(i) => &mut self.run_counts[i].1,
            None if self.run_counts.len() < 32 => {
                self.run_counts.push((hash, 0));
                &mut self.run_counts.last_mut().expect("just pushed").1
            }
            None => self.run_counts_map.entry(hash).or_insert(0),
        };
        let occurrence = *copy;
        *copy += 1;
        self.key.push(0x1f);
        self.key.extend_from_slice(
            itoa::Buffer::new()
                .format(self.run_number as i64)
                .as_bytes(),
        );
        self.key.push(0x1f);
        self.key
            .extend_from_slice(itoa::Buffer::new().format(occurrence as i64).as_bytes());
        uuid5(&self.key)
    }

    /// A new run of rows with one timestamp: its copies start at zero, and
    /// it is numbered after the runs of that timestamp before it.
    fn start_run(&mut self, occurred_at: &[u8; 19]) {
        self.run_ts = *occurred_at;
        self.run_counts.clear();
        self.run_counts_map.clear();
        if self.runs_per_ts.len() >= self.config.max_timestamps {
            // Deterministic (depends only on the input so far) and bounded.
            self.runs_per_ts.clear();
        }
        let n = self.runs_per_ts.entry(*occurred_at).or_insert(0);
        self.run_number = *n;
        *n += 1;
    }

    /// Writes the transaction row and its basket lines to the sink.
    #[inline]
    fn write_rows(
        &mut self,
        row: &TransactionRow<'_>,
        batch_id: &str,
        sink: &mut impl StarSink,
    ) -> Result<(), Error> {
        sink.transaction(row, batch_id)?;
        self.counts.transactions += 1;
        for (product_id, price, quantity) in &self.lines {
            sink.basket_item(row.transaction_id, product_id, *quantity, *price)?;
        }
        self.counts.basket_items += self.lines.len() as u64;
        Ok(())
    }

    /// Adds the transaction to the report's summary and, while there is
    /// room, its preview.
    #[inline(always)]
    fn summarise(&mut self, tx: &Transaction<'_>, items: &[Item], occurred_at: [u8; 19]) {
        let s = &mut self.summary;
        s.revenue_pence += tx.total_pence;
        s.transactions += 1;
        s.items += items.len() as u64;
        match tx.payment {
            Payment::Cash => s.cash_transactions += 1,
            Payment::Card => s.card_transactions += 1,
        }
        if self.first_at.is_none_or(|f| occurred_at < f) {
            self.first_at = Some(occurred_at);
        }
        if self.last_at.is_none_or(|l| occurred_at > l) {
            self.last_at = Some(occurred_at);
        }
        let hour = &mut self.by_hour[tx.occurred_at.hour as usize % 24];
        hour.0 += 1;
        hour.1 += tx.total_pence;
        if self.preview.len() < self.config.preview_rows {
            self.preview(tx, items, &occurred_at);
        }
    }

    /// Adds the transaction to the report's preview (its first rows only:
    /// out of line).
    #[inline(never)]
    fn preview(&mut self, tx: &Transaction<'_>, items: &[Item], occurred_at: &[u8; 19]) {
        self.preview.push(PreviewRow {
            line: tx.line,
            occurred_at: String::from_utf8_lossy(occurred_at).into_owned(),
            store: tx.store.to_string(),
            payment_method: tx.payment.as_str().to_string(),
            total_price: format_pence(tx.total_pence),
            items: items_preview(tx, items),
            has_customer_key: tx.customer_key.is_some(),
        });
    }

    /// A product the menu could not number: found by hashing its key.
    fn unnumbered_product(
        &mut self,
        size: &str,
        name: &str,
        flavour: &str,
        price_pence: i64,
        sink: &mut impl StarSink,
    ) -> Result<UuidText, Error> {
        product_key(&mut self.product_key, size, name, flavour);
        if let Some(e) = self.products.get_mut(self.product_key.as_slice()) {
            e.quantity += 1;
            e.revenue += price_pence;
            return Ok(e.id);
        }
        let id = uuid5(&self.product_key);
        sink.product(&id, size, name, flavour)?;
        self.counts.products += 1;
        if self.products.len() < self.config.max_products
            && self.cache_bytes + 2 * self.product_key.len() <= self.config.max_cache_bytes
        {
            self.cache_bytes += 2 * self.product_key.len();
            self.products.insert(
                self.product_key.as_slice().into(),
                ProductEntry::new(id, size, name, flavour, price_pence),
            );
        } else {
            self.other_products.0 += 1;
            self.other_products.1 += price_pence;
        }
        Ok(id)
    }

    /// Rows written per table so far (rejects excluded).
    pub fn counts(&self) -> &TableCounts {
        &self.counts
    }

    /// The summary and preview, once every row is in.
    pub fn finish(self) -> (TableCounts, Summary, Vec<PreviewRow>) {
        let mut summary = self.summary;
        let text = |t: [u8; 19]| String::from_utf8_lossy(&t).into_owned();
        summary.first_at = self.first_at.map(text);
        summary.last_at = self.last_at.map(text);
        let mut by_store: Vec<StoreSummary> = self
            .stores
            .iter()
            .map(|(name, e)| StoreSummary {
                store: name.to_string(),
                transactions: e.transactions,
                revenue_pence: e.revenue,
            })
            .collect();
        if self.other_stores.0 > 0 {
            by_store.push(StoreSummary {
                store: "(other stores)".into(),
                transactions: self.other_stores.0,
                revenue_pence: self.other_stores.1,
            });
        }
        by_store.sort_by(|a, b| {
            b.revenue_pence
                .cmp(&a.revenue_pence)
                .then_with(|| a.store.cmp(&b.store))
        });
        summary.by_store = by_store;
        let mut products: Vec<&ProductEntry> = self
            .numbered
            .iter()
            .flatten()
            .chain(self.products.values())
            .collect();
        products.sort_by(|a, b| {
            b.quantity
                .cmp(&a.quantity)
                .then_with(|| b.revenue.cmp(&a.revenue))
                .then_with(|| (&a.name, &a.size, &a.flavour).cmp(&(&b.name, &b.size, &b.flavour)))
        });
        summary.top_products = products
            .into_iter()
            .take(self.config.top_products)
            .map(|p| ProductSummary {
                product: product_label(&p.size, &p.name, &p.flavour),
                size: p.size.to_string(),
                name: p.name.to_string(),
                flavour: p.flavour.to_string(),
                quantity: p.quantity,
                revenue_pence: p.revenue,
            })
            .collect();
        summary.by_hour = self
            .by_hour
            .iter()
            .enumerate()
            .map(|(h, (n, r))| HourSummary {
                hour: h as u8,
                transactions: *n,
                revenue_pence: *r,
            })
            .collect();
        (self.counts, summary, self.preview)
    }
}

/// `Large Latte - Hazelnut`, `Latte`.
pub fn product_label(size: &str, name: &str, flavour: &str) -> String {
    let mut s = String::new();
    if !size.is_empty() {
        s.push_str(size);
        s.push(' ');
    }
    s.push_str(name);
    if !flavour.is_empty() {
        s.push_str(" - ");
        s.push_str(flavour);
    }
    s
}

fn items_preview(tx: &Transaction<'_>, items: &[Item]) -> Vec<String> {
    let mut out: Vec<(String, i64, u32)> = Vec::new();
    let mut index = HashMap::default();
    for item in items {
        let (size, name, flavour) = item.parts(tx.basket);
        let label = product_label(size, name, flavour);
        fold_line(&mut out, &mut index, label, item.price_pence);
    }
    out.into_iter()
        .map(|(l, p, q)| format!("{q} x {l} @ {}", format_pence(p)))
        .collect()
}

/// Lines of a basket scanned in order before [`fold_line`] indexes them:
/// real baskets have a handful, where a scan beats hashing.
const LINES_SCANNED: usize = 16;

/// Adds one item to the basket's lines: one more of an identical line, or
/// a new line. Scans while the basket is short, then keeps `index` (cleared
/// by the caller with `lines`) so a long basket is not quadratic.
#[inline(always)]
fn fold_line<K: Eq + std::hash::Hash + Clone>(
    lines: &mut Vec<(K, i64, u32)>,
    index: &mut HashMap<(K, i64), u32>,
    key: K,
    price: i64,
) {
    if lines.len() >= LINES_SCANNED {
        return fold_indexed(lines, index, key, price);
    }
    match lines.iter_mut().find(|(k, p, _)| *k == key && *p == price) {
        Some(line) => line.2 += 1,
        None => lines.push((key, price, 1)),
    }
}

/// [`fold_line`] past [`LINES_SCANNED`] lines: out of line, rare.
#[inline(never)]
fn fold_indexed<K: Eq + std::hash::Hash + Clone>(
    lines: &mut Vec<(K, i64, u32)>,
    index: &mut HashMap<(K, i64), u32>,
    key: K,
    price: i64,
) {
    if index.is_empty() {
        for (i, (k, p, _)) in lines.iter().enumerate() {
            index.insert((k.clone(), *p), i as u32);
        }
    }
    match index.get(&(key.clone(), price)) {
        Some(&i) => lines[i as usize].2 += 1,
        None => {
            index.insert((key.clone(), price), lines.len() as u32);
            lines.push((key, price, 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid5_matches_the_rfc_example() {
        // RFC 9562 appendix A.4: v5 of "www.example.com" in the DNS namespace
        // is 2ed6657d-e927-568b-95e1-2665a8aea6a2. Check the algorithm with it.
        let dns = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8,
        ];
        let mut h = Sha1::new();
        h.update(dns);
        h.update(b"www.example.com");
        let d = h.finalize();
        let mut u = [0u8; 16];
        u.copy_from_slice(&d[..16]);
        u[6] = (u[6] & 0x0f) | 0x50;
        u[8] = (u[8] & 0x3f) | 0x80;
        assert_eq!(hex::encode(u), "2ed6657de927568b95e12665a8aea6a2");
        // The same bits and text through uuid5, in this crate's namespace.
        let id = uuid5(b"x");
        let mut h = Sha1::new();
        h.update(NAMESPACE);
        h.update(b"x");
        let mut u = [0u8; 16];
        u.copy_from_slice(&h.finalize()[..16]);
        u[6] = (u[6] & 0x0f) | 0x50;
        u[8] = (u[8] & 0x3f) | 0x80;
        let want = hex::encode(u);
        let want = [
            &want[..8],
            &want[8..12],
            &want[12..16],
            &want[16..20],
            &want[20..],
        ]
        .join("-");
        assert_eq!(std::str::from_utf8(&id).unwrap(), want);
    }

    #[test]
    fn the_menu_numbers_products_once_whatever_the_item_text() {
        // (basket, items' text slots, numbers wanted): a slot is numbered
        // by its parts the first time, by index after; two texts of one
        // product (another price) share its number; past the cap, NO_PRODUCT.
        let item = |basket: &str, text: u32| {
            let (desc, _) = basket.split_once(" @ ").unwrap();
            let (name, flavour) = desc.split_once('/').unwrap_or((desc, &desc[desc.len()..]));
            let at = |part: &str| {
                let s = part.as_ptr() as usize - basket.as_ptr() as usize;
                s as u32..(s + part.len()) as u32
            };
            Item {
                size: 0..0,
                name: at(name),
                flavour: at(flavour),
                price_pence: 245,
                text_slot: text,
            }
        };
        let cases: &[(&str, u32, u32)] = &[
            ("Latte @ 2.45", 0, 0),
            ("Mocha @ 2.30", 1, 1),
            ("Latte @ 2.50", 2, 0),
            ("Latte @ 2.45", 0, 0),
            ("Latte/Vanilla @ 2.45", NO_TEXT_SLOT, 2),
            ("Mocha @ 2.30", NO_TEXT_SLOT, 1),
            ("Tea @ 1.00", 3, NO_PRODUCT),
            ("Tea @ 1.00", 3, NO_PRODUCT),
            ("Latte @ 2.45", 99, 0),
        ];
        let mut menu = Menu::new(3, 1 << 10);
        for &(basket, text, want) in cases {
            assert_eq!(
                menu.number_item(&item(basket, text), basket),
                want,
                "{basket} {text}"
            );
        }
        assert!(menu.by_text.len() <= 4, "slots past the cap are not kept");
        let mut tiny = Menu::new(100, 8);
        assert_eq!(tiny.number("", "Latte", ""), 0);
        assert_eq!(
            tiny.number("", "Flat white", ""),
            NO_PRODUCT,
            "over the bytes"
        );
    }

    #[test]
    fn product_ids_respect_case() {
        assert_ne!(
            product_id("Large", "Hot Chocolate", ""),
            product_id("Large", "Hot chocolate", "")
        );
        assert_eq!(
            product_id("Large", "Latte", ""),
            product_id("Large", "Latte", "")
        );
        assert_ne!(
            product_id("", "Latte", "Vanilla"),
            product_id("", "Latte - Vanilla", "")
        );
    }

    #[test]
    fn lines_fold_the_same_scanned_or_indexed() {
        for n in [0usize, 1, 15, 16, 17, 40, 300] {
            // Items repeating every 7, with two prices per product.
            let items: Vec<(u32, i64)> = (0..n).map(|i| ((i % 7) as u32, (i % 2) as i64)).collect();
            let mut want: Vec<(u32, i64, u32)> = Vec::new();
            for &(k, p) in &items {
                match want.iter_mut().find(|l| l.0 == k && l.1 == p) {
                    Some(l) => l.2 += 1,
                    None => want.push((k, p, 1)),
                }
            }
            // Distinct items past the scanned count go through the index.
            let distinct: Vec<(u32, i64)> = (0..n as u32)
                .map(|i| (i, 5))
                .chain((0..n as u32).map(|i| (i, 5)))
                .collect();
            for (input, expected) in [
                (items, want),
                (distinct.clone(), (0..n as u32).map(|i| (i, 5, 2)).collect()),
            ] {
                let mut lines = Vec::new();
                let mut index = HashMap::default();
                for (k, p) in input {
                    fold_line(&mut lines, &mut index, k, p);
                }
                assert_eq!(lines, expected, "{n} items");
            }
        }
    }
}
