//! Rows a till writes when someone types a comma, a quote or extra spaces:
//! a customer name and a card number placed anywhere in a row, fields
//! dropped and added. Shared by the native privacy tests (tests/privacy.rs,
//! with proptest) and the WebAssembly ones (tests/wasm_common, an
//! enumeration), so both search their outputs for the same shapes. Plain
//! std: it builds for wasm32 too.
#![allow(dead_code)]

/// How a name is typed into its field; `{g}` and `{s}` stand for the given
/// name and the surname.
pub const NAME_SHAPES: [&str; 8] = [
    "{g} {s}",
    "{s}, {g}",
    "\"{s}, {g}\"",
    "  {g}   {s}  ",
    "\"{g} \"\"Zvnick\"\" {s}\"",
    "{s},{g},Jr",
    "{g} \"{s}\"",
    "\"{s}, {g}",
];

/// How the digits of a card number are joined.
pub const CARD_SHAPES: [&str; 7] = ["", " ", ".", "-", "/", "_", " - "];

/// Published test card numbers.
pub const TEST_CARDS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "4000056655665556",
    "378282246310005",
];

/// Fields other tills or stray commas add.
pub const EXTRA_FIELDS: [&str; 6] = ["", "x", "2.45", "CASH", "Leeds", "25/08/2021 09:00"];

/// A name typed in a shape of [`NAME_SHAPES`].
pub fn typed_name(shape: usize, given: &str, surname: &str) -> String {
    NAME_SHAPES[shape % NAME_SHAPES.len()]
        .replace("{g}", given)
        .replace("{s}", surname)
}

/// A card number's digits in groups of four joined as [`CARD_SHAPES`] says.
pub fn typed_card(shape: usize, digits: &str) -> String {
    let joiner = CARD_SHAPES[shape % CARD_SHAPES.len()];
    digits
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(joiner)
}

/// What to do to a row besides placing the name and the card number.
#[derive(Clone, Debug, Default)]
pub struct Mangling {
    /// Where the name goes among the other six fields (0..=6).
    pub name_at: usize,
    /// Where the card number goes, after the name is placed (0..=6).
    pub card_at: usize,
    /// Fields dropped, by position at the time (taken modulo the length).
    pub drop: Vec<usize>,
    /// Fields added: position (modulo the length + 1), index into
    /// [`EXTRA_FIELDS`].
    pub add: Vec<(usize, usize)>,
}

/// One line: `timestamp, store, basket, total, payment` around the typed
/// name and card number, placed and mangled as `m` says.
pub fn row(n: usize, name: &str, card: &str, m: &Mangling) -> String {
    let ts = format!("25/08/2021 {:02}:{:02}", 8 + n / 60 % 10, n % 60);
    let mut fields: Vec<String> = [ts.as_str(), "Leeds", "Large Latte - 2.45", "2.45", "CARD"]
        .map(String::from)
        .to_vec();
    fields.insert(m.name_at.min(fields.len()), name.to_string());
    fields.insert(m.card_at.min(fields.len()), card.to_string());
    for &d in &m.drop {
        if !fields.is_empty() {
            let at = d % fields.len();
            fields.remove(at);
        }
    }
    for &(at, extra) in &m.add {
        let at = at % (fields.len() + 1);
        fields.insert(at, EXTRA_FIELDS[extra % EXTRA_FIELDS.len()].to_string());
    }
    fields.join(",")
}

/// Every shape of name and card in every position, with one field dropped
/// or added or neither: the enumeration the WebAssembly test stages.
pub fn enumeration(given: &str, surname: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut n = 0;
    for shape in 0..NAME_SHAPES.len() {
        for name_at in 0..7 {
            for change in 0..4 {
                let card_shape = (shape + name_at + change) % CARD_SHAPES.len();
                let digits = TEST_CARDS[(name_at + change) % TEST_CARDS.len()];
                let m = Mangling {
                    name_at,
                    card_at: (name_at + 1 + change * 2) % 7,
                    drop: match change {
                        1 => vec![(name_at + 1) % 7],
                        3 => vec![1],
                        _ => vec![],
                    },
                    add: match change {
                        2 => vec![(name_at + 1, n)],
                        3 => vec![(name_at, n + 1)],
                        _ => vec![],
                    },
                };
                rows.push(row(
                    n,
                    &typed_name(shape, given, surname),
                    &typed_card(card_shape, digits),
                    &m,
                ));
                n += 1;
            }
        }
    }
    rows
}

/// The fields of one line as RFC 4180 reads them, written here apart from
/// the crate's reader; `None` when a quote is left open (the record then
/// runs over the next lines, and its free text is withheld).
pub fn fields_of(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut at_start = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(String::new());
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    (!quoted).then_some(fields)
}

/// The one place no content check can catch a name: the store column of
/// a row that still has 7 fields. A name typed there is a store name like
/// any other (staged, kept in a reject row, quoted in a store message);
/// the worker's one-store-per-branch rule refuses it at upload. Gives
/// those store values (trimmed), for [`find_personal_data`] to cut out.
pub fn names_in_store_column(lines: &[String], names: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| fields_of(l))
        .filter(|f| f.len() == 7 && names.iter().any(|n| f[1].contains(n)))
        .map(|f| f[1].trim().to_string())
        .collect()
}

/// The first of `needles` (name parts, card numbers) found in `text`, once
/// the `excused` store values (see [`names_in_store_column`]) are cut out,
/// as written in text, in JSON and in CSV.
pub fn find_personal_data<'a>(
    text: &str,
    excused: &[String],
    needles: &'a [String],
) -> Option<&'a str> {
    let mut text = text.to_string();
    let mut excused: Vec<&String> = excused.iter().collect();
    // Longest first, so a store that contains another is cut whole.
    excused.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in excused {
        for form in [s.clone(), s.replace('"', "\\\""), s.replace('"', "\"\"")] {
            text = text.replace(&form, "");
        }
    }
    needles
        .iter()
        .find(|n| !n.is_empty() && text.contains(n.as_str()))
        .map(String::as_str)
}

/// The needles of a card number: as typed, and its bare digits.
pub fn card_needles(typed: &str) -> Vec<String> {
    let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
    vec![typed.to_string(), digits]
}
