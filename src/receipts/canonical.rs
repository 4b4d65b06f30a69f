//! Canonical JSON (RFC 8785 style): the one byte string a JSON value hashes to.
//!
//! Input: a `serde_json::Value` (or a float to admit). Output: bytes with object keys sorted by
//! their UTF-16 code units, no whitespace, strings escaped minimally (`\"`, `\\`, the short
//! escapes `\b \t \n \f \r`, other controls as `\u00xx`, everything else literal) and numbers in
//! the shortest ECMAScript form (`1`, `0.5`, `1e+21`, `1e-7`, never `-0`).
//!
//! Deliberate deviation from RFC 8785: integers that serde_json holds exactly (`u64`/`i64`) are
//! written exactly even beyond ±2^53 instead of being rounded through a double, so a decision is
//! preserved digit for digit. Non-finite numbers cannot enter: [`float`] rejects them, and
//! `serde_json::Value` cannot hold them.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Number, Value};
use thiserror::Error;

/// Why a value has no canonical form.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    /// NaN or ±infinity: JSON has no spelling for them.
    #[error("number {0} is not finite; canonical JSON admits only finite numbers")]
    NonFinite(String),
}

/// Admits a float into a JSON value, rejecting NaN and ±infinity.
pub fn float(x: f64) -> Result<Value, CanonicalError> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| CanonicalError::NonFinite(format!("{x}")))
}

/// The canonical encoding of `value` as a string.
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            if map.keys().all(|k| k.is_ascii()) && map.keys().is_sorted() {
                // Sorted ASCII keys are in UTF-16 order already (serde_json sorts unless a
                // dependency turns on `preserve_order`, hence the check).
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    write_value(out, v)?;
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    write_value(out, v)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Orders two strings by their UTF-16 code units, as RFC 8785 §3.2.3 requires.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Appends a JSON string literal with RFC 8785 escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Every byte that needs escaping is ASCII, and ASCII bytes never occur inside a multi-byte
    // UTF-8 sequence, so scanning bytes is exact and splitting at them keeps `&s[..]` valid.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an unsigned integer in decimal (no formatting machinery: this is on the hot path).
pub fn push_u64(out: &mut String, mut u: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(d as char);
    }
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        push_u64(out, u);
    } else if let Some(i) = n.as_i64() {
        if i < 0 {
            out.push('-');
        }
        push_u64(out, i.unsigned_abs());
    } else {
        let x = n.as_f64().unwrap_or(f64::NAN);
        write_f64(out, x)?;
    }
    Ok(())
}

/// Appends a finite double in ECMAScript `Number.prototype.toString` form.
///
/// With the shortest round-trip digits `d₁…d_k` and decimal exponent `n` (value = 0.d₁…d_k × 10ⁿ):
/// `k ≤ n ≤ 21` → digits then `n−k` zeros; `0 < n ≤ 21` → `d₁…d_n.d_{n+1}…d_k`;
/// `−6 < n ≤ 0` → `0.` then `−n` zeros then digits; otherwise `d₁[.d₂…d_k]e±(n−1)`.
pub fn write_f64(out: &mut String, x: f64) -> Result<(), CanonicalError> {
    if !x.is_finite() {
        return Err(CanonicalError::NonFinite(format!("{x}")));
    }
    if x == 0.0 {
        out.push('0');
        return Ok(());
    }
    if x < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        let _ = write!(out, "{}", (n - 1).abs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        to_string(v).unwrap()
    }

    #[test]
    fn objects_are_written_with_sorted_keys_and_no_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b" : [1, 2, {"z":null, "a":true}], "a": "x" }"#).unwrap();
        assert_eq!(canon(&v), r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#);
    }

    #[test]
    fn numbers_take_the_shortest_ecmascript_form() {
        let table: &[(&str, &str)] = &[
            ("0", "0"),
            ("-0.0", "0"),
            ("1.0", "1"),
            ("-1", "-1"),
            ("0.5", "0.5"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("123456789012345680000", "123456789012345680000"),
            ("1e-7", "1e-7"),
            ("0.000001", "0.000001"),
            ("1.5e-7", "1.5e-7"),
            ("4.35", "4.35"),
            ("0.1", "0.1"),
            ("1e300", "1e+300"),
            ("-2.5e-10", "-2.5e-10"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
        ];
        for (input, want) in table {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(canon(&v), *want, "input {input}");
        }
    }

    #[test]
    fn strings_escape_only_quotes_backslashes_and_controls() {
        let table: &[(&str, &str)] = &[
            ("plain", r#""plain""#),
            ("q\"b\\", r#""q\"b\\""#),
            ("\u{08}\t\n\u{0c}\r", r#""\b\t\n\f\r""#),
            ("\u{01}\u{1f}", r#""\u0001\u001f""#),
            ("/é€😀\u{2028}", "\"/é€😀\u{2028}\""),
        ];
        for (input, want) in table {
            assert_eq!(canon(&Value::String((*input).to_string())), *want);
        }
    }

    #[test]
    fn keys_are_sorted_by_utf16_code_units_not_utf8_bytes() {
        // U+1F600 is a surrogate pair (0xD83D…) and sorts before U+FB01 (0xFB01) in UTF-16,
        // although its UTF-8 bytes (F0…) sort after (EF…).
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canon(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }

    #[test]
    fn non_finite_floats_are_rejected_with_their_value_named() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = float(x).unwrap_err();
            assert!(err.to_string().contains("not finite"), "{err}");
            assert!(write_f64(&mut String::new(), x).is_err());
        }
        assert_eq!(float(2.5).unwrap(), json!(2.5));
    }

    proptest! {
        #[test]
        fn canonical_floats_parse_back_to_the_same_double(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL) {
            let mut s = String::new();
            write_f64(&mut s, x).unwrap();
            let back: f64 = s.parse().unwrap();
            prop_assert_eq!(back, x);
        }

        #[test]
        fn any_string_escapes_to_json_that_parses_back_to_it(text in any::<String>()) {
            let c = canon(&Value::String(text.clone()));
            prop_assert!(!c.bytes().any(|b| b < 0x20), "raw control byte in {:?}", c);
            let back: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(back, Value::String(text));
        }

        #[test]
        fn canonical_form_is_a_fixed_point_of_parse_and_encode(
            keys in proptest::collection::vec("[a-zA-Z\u{e9}\u{1f600}]{0,4}", 0..6),
            nums in proptest::collection::vec(any::<i64>(), 0..6),
            text in "\\PC{0,12}",
        ) {
            let mut map = serde_json::Map::new();
            for (k, n) in keys.iter().zip(nums.iter()) {
                map.insert(k.clone(), json!([n, text.clone(), {"k": k}]));
            }
            let v = Value::Object(map);
            let once = canon(&v);
            let reparsed: Value = serde_json::from_str(&once).unwrap();
            prop_assert_eq!(&reparsed, &v);
            prop_assert_eq!(canon(&reparsed), once);
        }
    }
}
