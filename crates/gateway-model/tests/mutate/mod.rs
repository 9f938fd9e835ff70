//! Schema-guided mutations of JSON documents, for the agreement tests.
//!
//! A mutation picks one place a document can hold a value (every property the schema
//! names, present or not, every list and map, every element) and sets it to a value near
//! the bounds the schema states there: a number one below, at and one above `minimum`
//! and `maximum` (an integer sometimes written as a float, `512.0` or `512.5`), a string one character short of or over `minLength`/`maxLength` (in
//! one- to four-byte characters), a string with a character the usual patterns refuse
//! (whitespace, `/`, `é`, U+FEFF, U+0085), an unknown enum name, `null`, a wrong type;
//! a list emptied, grown past `maxItems` or given a duplicate; a map given a key of
//! every shape, emptied, or filled past `maxProperties`.
//!
//! The edges come from the schema, so a bound edited in the generated schema moves the
//! edges with it (and the Rust validator, which did not move, disagrees), while a bound
//! the schema states but Rust does not check is probed all the same.

// Schema bounds are small whole numbers, so the casts between f64 and integers are exact.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use serde_json::{Map, Value, json};

/// A deterministic random source (`SplitMix64`), seeded per mutation by proptest.
pub struct Rng(u64);

impl Rng {
    /// A source for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// One step of a path into a document.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A place a mutation can write to, with the schema that governs it there.
#[derive(Debug)]
struct Slot<'a> {
    path: Vec<Seg>,
    /// The schema at the place, `$ref`s followed and `null` alternatives set aside.
    schema: &'a Value,
    /// Whether `null` is allowed there (an `Option`).
    nullable: bool,
}

/// Follows `$ref`s and picks the non-`null` branch of a two-way `anyOf`; tells whether a
/// `null` branch (or a `null` type) was there.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> (&'a Value, bool) {
    let mut nullable = false;
    loop {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/$defs/");
            node = &root["$defs"][name];
            continue;
        }
        if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
            let (nulls, others): (Vec<&Value>, Vec<&Value>) = branches
                .iter()
                .partition(|b| b.get("type") == Some(&json!("null")));
            if !nulls.is_empty() && others.len() == 1 {
                nullable = true;
                node = others[0];
                continue;
            }
        }
        break;
    }
    if let Some(types) = node.get("type").and_then(Value::as_array) {
        nullable |= types.iter().any(|t| t == "null");
    }
    (node, nullable)
}

/// The first non-`null` type the schema names, if any.
fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// Every place in `doc` (and every property its schema names but it lacks).
fn slots<'a>(
    root: &'a Value,
    node: &'a Value,
    doc: Option<&Value>,
    path: &[Seg],
    out: &mut Vec<Slot<'a>>,
) {
    let (schema, nullable) = resolve(root, node);
    let child = |seg: Seg| {
        let mut p = path.to_vec();
        p.push(seg);
        p
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if nullable {
            out.push(Slot {
                path: path.to_vec(),
                schema,
                nullable,
            });
        }
        for (key, sub) in props {
            let here = child(Seg::Key(key.clone()));
            slots(root, sub, doc.and_then(|d| d.get(key)), &here, out);
        }
        return;
    }
    out.push(Slot {
        path: path.to_vec(),
        schema,
        nullable,
    });
    match (type_of(schema), doc) {
        (Some("object"), Some(Value::Object(entries))) => {
            if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                for (key, value) in entries {
                    slots(
                        root,
                        values,
                        Some(value),
                        &child(Seg::Key(key.clone())),
                        out,
                    );
                }
            }
        }
        (Some("array"), Some(Value::Array(items))) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    slots(root, item_schema, Some(item), &child(Seg::Index(i)), out);
                }
            }
        }
        _ => {}
    }
}

fn get<'a>(doc: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, seg| match seg {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

/// Sets the value at `path`, creating objects on the way.
fn set(doc: &mut Value, path: &[Seg], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *doc = value;
        return;
    };
    let mut here = doc;
    for seg in parents {
        here = match seg {
            Seg::Key(k) => {
                if !here.is_object() {
                    *here = Value::Object(Map::new());
                }
                here.as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(Value::Object(Map::new()))
            }
            Seg::Index(i) => &mut here[*i],
        };
    }
    match last {
        Seg::Key(k) => {
            if !here.is_object() {
                *here = Value::Object(Map::new());
            }
            here.as_object_mut().unwrap().insert(k.clone(), value);
        }
        Seg::Index(i) => here[*i] = value,
    }
}

fn bound(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

/// Characters that take one to four bytes.
const UNITS: [&str; 6] = ["a", "é", "語", "🦀", "A", "_"];
/// Characters the usual patterns and rules refuse (or that look as if they should).
const ODD: [&str; 14] = [
    " ", "\t", "\n", "/", "é", "\u{feff}", "\u{85}", "\u{3000}", "\u{200b}", "~", ":", ".", "-",
    "0",
];

fn integer(rng: &mut Rng, schema: &Value) -> Value {
    let min = bound(schema, "minimum").map_or(0, |m| m as i128);
    let max = bound(schema, "maximum").map_or(i128::from(u32::MAX), |m| m as i128);
    let edges = [min - 1, min, min + 1, max - 1, max, max + 1];
    let n = if rng.chance(4) {
        min + i128::from(rng.next() % 1_000_000) % (max - min + 1).max(1)
    } else {
        *rng.pick(&edges)
    };
    match rng.below(8) {
        // The same integer written as a float (`512.0`), which JSON Schema counts as an
        // integer, or one with a fraction, which it does not.
        0 => json!(n as f64),
        1 => json!(n as f64 + 0.5),
        _ => i64::try_from(n)
            .map_or_else(|_| json!(u64::try_from(n).unwrap_or(u64::MAX)), Value::from),
    }
}

fn number(rng: &mut Rng, schema: &Value) -> Value {
    let min = bound(schema, "minimum")
        .or_else(|| bound(schema, "exclusiveMinimum"))
        .unwrap_or(0.0);
    let max = bound(schema, "maximum").unwrap_or(1e6);
    let edges = [
        min - 0.1,
        min - 1e-9,
        min,
        min + 1e-9,
        f64::midpoint(min, max),
        max - 1e-9,
        max,
        max + 1e-9,
        max + 0.1,
    ];
    json!(*rng.pick(&edges))
}

fn string(rng: &mut Rng, schema: &Value, current: Option<&str>) -> Value {
    let unit = *rng.pick(&UNITS);
    let at_length = |n: usize| unit.repeat(n);
    let min = bound(schema, "minLength").map_or(0, |m| m as usize);
    let max = bound(schema, "maxLength").map(|m| m as usize);
    let base = current.unwrap_or("value").to_owned();
    match rng.below(6) {
        0 => json!(at_length(min.saturating_sub(1))),
        1 => json!(at_length(min.max(1))),
        2 => json!(max.map_or_else(|| at_length(300), |m| at_length(m + rng.below(2)))),
        3 => {
            let odd = rng.pick(&ODD).repeat(1 + rng.below(3));
            json!(odd)
        }
        _ => {
            // One odd character inside a good value.
            let chars: Vec<char> = base.chars().collect();
            let at = rng.below(chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            let odd = rng.pick(&ODD);
            s.push_str(odd);
            s.extend(&chars[at..]);
            json!(s)
        }
    }
}

/// A value for `slot`, near the bounds its schema states.
fn leaf(rng: &mut Rng, slot: &Slot<'_>, current: Option<&Value>) -> Value {
    if slot.nullable && rng.chance(8) {
        return Value::Null;
    }
    if rng.chance(25) {
        // The wrong type.
        return if type_of(slot.schema) == Some("string") {
            json!(1)
        } else {
            json!("1")
        };
    }
    if let Some(names) = slot.schema.get("enum").and_then(Value::as_array) {
        let mut names: Vec<Value> = names.iter().filter(|n| !n.is_null()).cloned().collect();
        names.extend([json!("moon-1"), json!("PII"), json!("")]);
        return rng.pick(&names).clone();
    }
    match type_of(slot.schema) {
        Some("integer") => integer(rng, slot.schema),
        Some("number") => number(rng, slot.schema),
        Some("string") => string(rng, slot.schema, current.and_then(Value::as_str)),
        Some("boolean") => json!(rng.chance(2)),
        _ => current.cloned().unwrap_or(Value::Null),
    }
}

/// A fresh element for a list: a new or repeated one of the same shape.
fn element(rng: &mut Rng, items: &[Value], n: usize) -> Value {
    match items.first() {
        Some(Value::String(_)) if rng.chance(2) => json!(format!("m-{n}")),
        Some(Value::String(_)) | None => json!(format!("m-{}", rng.below(3))),
        Some(Value::Object(first)) => {
            let mut e = Value::Object(first.clone());
            if let Some(model) = e.get_mut("model") {
                *model = json!(format!("m-{n}"));
            }
            e
        }
        Some(other) => other.clone(),
    }
}

fn list(rng: &mut Rng, slot: &Slot<'_>, current: Option<&Value>) -> Value {
    let items: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let max = bound(slot.schema, "maxItems").map_or(8, |m| m as usize);
    let mut out = items.clone();
    match rng.below(4) {
        0 => out.clear(),
        1 => {
            if let Some(first) = items.first() {
                out.push(first.clone());
            } else {
                out.push(element(rng, &items, 0));
                out.push(out[0].clone());
            }
        }
        2 => {
            let target = max + rng.below(2);
            while out.len() < target {
                let e = element(rng, &items, out.len() + 100);
                out.push(e);
            }
        }
        _ => {
            let e = element(rng, &items, out.len() + 200);
            out.push(e);
        }
    }
    Value::Array(out)
}

fn map(rng: &mut Rng, slot: &Slot<'_>, current: Option<&Value>) -> Value {
    let mut entries = current
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let sample = entries.values().next().cloned().unwrap_or(json!("v"));
    let names = &slot.schema["propertyNames"];
    let max_key = bound(names, "maxLength").map_or(64, |m| m as usize);
    let keys = [
        "r2".to_owned(),
        "k.v-2_x".to_owned(),
        String::new(),
        "Bad Name".to_owned(),
        "a/b~c".to_owned(),
        "é".to_owned(),
        "k".repeat(max_key),
        "k".repeat(max_key + 1),
    ];
    match rng.below(4) {
        0 => entries.clear(),
        1 => {
            let max = bound(slot.schema, "maxProperties").map_or(4, |m| m as usize);
            let target = max + rng.below(2);
            let mut i = 0;
            while entries.len() < target {
                entries.insert(format!("k{i}"), sample.clone());
                i += 1;
            }
        }
        _ => {
            entries.insert(rng.pick(&keys).clone(), sample);
        }
    }
    Value::Object(entries)
}

/// Applies one mutation, chosen by `seed`, to `doc` (whose schema is `root`).
pub fn mutate(root: &Value, doc: &mut Value, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut places = Vec::new();
    slots(root, root, Some(doc), &[], &mut places);
    let slot = rng.pick(&places);
    let current = get(doc, &slot.path);
    let value = if slot.schema.get("properties").is_some() {
        // A whole optional section: set it to `null`.
        Value::Null
    } else {
        match type_of(slot.schema) {
            Some("array") if !rng.chance(6) => list(&mut rng, slot, current),
            Some("object") if !rng.chance(6) => map(&mut rng, slot, current),
            _ => leaf(&mut rng, slot, current),
        }
    };
    set(doc, &slot.path, value);
}
