//! The pixel's query string (`GET /v1/pixel.gif?session_id=..&event=..`) read into a beacon's
//! field table, as [`super::text`] reads a JSON body into it: then the same rules apply.
//!
//! Each parameter is a field, its value a string, except `ts`, a number when it is all digits
//! (else a string, e.g. RFC 3339), and `props`, a JSON text (API.md: "`props` as a JSON
//! string"), parsed and written again compactly as the pixel always has.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{Field, Fields, Read};
use super::Invalid;

/// Parameters that are not beacon fields: the token, and `_`, the usual cache buster. They are
/// skipped even when repeated.
pub(super) const NOT_FIELDS: [&str; 2] = ["token", "_"];

/// Reads a query string (without its `?`) into the fields of `table`.
///
/// A field given twice (`?event=a&event=b`) is `duplicate_field`, as a repeated key in a JSON
/// body is: servers and proxies disagree on which copy wins. That, a `ts` out of range and a
/// `props` that is not JSON are refused at once, in the query's order; every other rule
/// applies afterwards, in the table's order. Of several unknown parameters the one reported is
/// the smallest name (the pixel collected them in a sorted map), not the first one sent.
pub(super) fn fields<'a, const N: usize>(
    query: &'a str,
    table: &[(&str, Read); N],
) -> Result<Fields<'a, N>, Invalid> {
    let mut known: [Field<'a>; N] = std::array::from_fn(|_| Field::Absent);
    let mut seen = [false; N];
    // A set, not a list: a hostile query of many distinct unknown names stays n log n.
    let mut unknown: BTreeSet<Cow<'a, str>> = BTreeSet::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if NOT_FIELDS.contains(&&*name) {
            continue;
        }
        let Some(i) = table.iter().position(|(field, _)| *field == name) else {
            if unknown.contains(&name) {
                return Err(Invalid::duplicate(&name));
            }
            unknown.insert(name);
            continue;
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(Invalid::duplicate(&name));
        }
        known[i] = field(table[i].0, value)?;
    }
    let unknown = unknown.into_iter().next();
    Ok(Fields { known, unknown })
}

/// One parameter's value as the field `name`.
fn field<'a>(name: &str, value: Cow<'a, str>) -> Result<Field<'a>, Invalid> {
    let json = |why| {
        serde_json::from_str::<Value>(&value)
            .map(|parsed| Field::from(Some(parsed)))
            .map_err(|_| Invalid::bad(name, why))
    };
    match name {
        // JSON's reading of the digits: past `u64` a float, past `f64` (or with a leading
        // zero) not a number at all.
        "ts" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            json("is out of range")
        }
        "props" => json("must be a JSON object"),
        _ => Ok(Field::Str(value)),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::beacon::{from_query, MAX_PROPS_BYTES};
    use crate::event::reference;

    #[test]
    fn query_fields_become_a_beacon() {
        let v = from_query(
            "token=t&_=123&session_id=s%201&event=view&ts=1700000000000&props=%7B%22a%22%3A1%7D",
        )
        .unwrap();
        let b = v.into_beacon();
        assert_eq!(b.session_id, "s 1");
        assert_eq!(b.client_ts_ms, 1_700_000_000_000);
        assert_eq!(b.props_json, r#"{"a":1}"#);
    }

    #[test]
    fn props_are_written_again_compactly_in_key_order() {
        let v = from_query("session_id=s&event=e&props=%7B%22z%22%3A+1%2C+%22a%22%3A+%5B1%5D%7D");
        assert_eq!(v.unwrap().into_beacon().props_json, r#"{"a":[1],"z":1}"#);
        let v = from_query("session_id=s&event=e&props=%7B%22a%22%3A1%2C%22a%22%3A2%7D");
        assert_eq!(v.unwrap().into_beacon().props_json, r#"{"a":2}"#);
    }

    #[test]
    fn bad_props_name_the_field() {
        let err = from_query("props=nope").unwrap_err();
        assert_eq!(err.code, "invalid_field");
        assert!(err.message.contains("`props`"), "{}", err.message);
    }

    #[test]
    fn a_repeated_field_is_refused() {
        for query in [
            "session_id=a&session_id=b&event=e",
            "session_id=a&event=e&event=e",
            "session_id=a&event=e&props=%7B%7D&props=%7B%7D",
            "session_id=a&event=e&x=1&x=2",
        ] {
            let err = from_query(query).unwrap_err();
            assert_eq!(err.code, "duplicate_field", "{query}");
            assert!(err.message.contains("appears more than once"), "{query}");
        }
        // The token and the cache buster are not fields.
        assert!(from_query("token=a&token=b&_=1&_=2&session_id=s&event=e").is_ok());
    }

    /// Queries whose answers turn on one of the pixel's rules, each compared in full (code,
    /// message, and every byte of the beacon) with the map the pixel built before.
    #[test]
    fn queries_give_the_reference_answers() {
        let big_props = format!(
            "props=%7B%22k%22%3A%22{}%22%7D",
            "x".repeat(MAX_PROPS_BYTES)
        );
        let cases = [
            "",
            "session_id=s&event=e",
            "session_id=s&event=e&ts=",
            "session_id=s&event=e&ts=0",
            "session_id=s&event=e&ts=00",
            "session_id=s&event=e&ts=0123",
            "session_id=s&event=e&ts=9223372036854775807",
            "session_id=s&event=e&ts=9223372036854775808",
            "session_id=s&event=e&ts=18446744073709551616",
            &format!("session_id=s&event=e&ts={}", "9".repeat(400)),
            "session_id=s&event=e&ts=-1",
            "session_id=s&event=e&ts=1.5",
            "session_id=s&event=e&ts=%201",
            "session_id=s&event=e&ts=2023-11-14T22%3A13%3A20.123Z",
            "session_id=s&event=e&ts=yesterday",
            "session_id=s&event=e&props=",
            "session_id=s&event=e&props=null",
            "session_id=s&event=e&props=%22a%22",
            "session_id=s&event=e&props=1",
            "session_id=s&event=e&props=true",
            "session_id=s&event=e&props=%5B%5D",
            "session_id=s&event=e&props=%7B%22a%22%3A%22%5Cud800%22%7D",
            "session_id=s&event=e&props=%7B%22a%22%3A1e400%7D",
            "session_id=s&event=e&props=%7B%7D%20",
            &format!("session_id=s&event=e&{big_props}"),
            "event=e&ts=0123",
            "ts=0123&session_id=s&session_id=t",
            "session_id=s&session_id=t&props=nope",
            "session_id=&event=e",
            "session_id=s&event=e&zeta=1&alpha=2",
            "session_id=s&event=e&zeta=1&alpha=2&zeta=3",
            "alpha=1&event=e",
            "session_id=s&event=e&id=",
            "session_id=s&event=e&id=evt-1&url=u&referrer=r&title=t&user_id=u",
            "session_id=s&event=e&%74oken=x&tok%65n=y",
            "session_id=s&event=e&ev%65nt=f",
            "session_id=s&event=%FF%FE",
            "session_id=s&event=e&%FF=1",
            "session_id=s+1&event=a%26b%3Dc",
            "session_id=s&event=e&&&=&x",
            "session_id=s&event=e&=1&=2",
            "session_id",
            "session_id&event",
        ];
        for query in cases {
            assert_eq!(from_query(query), reference::from_query(query), "{query}");
        }
    }
}

#[cfg(test)]
mod properties {
    use crate::event::beacon::from_query;
    use crate::event::reference;
    use proptest::prelude::*;

    /// Parameter names: the beacon's fields, the skipped ones, unknown ones, and spellings
    /// that decode to them.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "session_id",
                "event",
                "ts",
                "url",
                "referrer",
                "title",
                "user_id",
                "props",
                "id",
                "token",
                "_",
                "other",
                "a",
                "zz",
                "%74s",
                "ev%65nt",
                "",
                "%FF",
            ])
            .prop_map(str::to_owned),
            "[a-z_%0-9]{0,6}",
        ]
    }

    /// Values: the shapes `ts` and `props` read specially, and arbitrary text.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,22}",
            prop::sample::select(vec![
                "s",
                "e",
                "2023-11-14T22%3A13%3A20Z",
                "%7B%7D",
                "%7B%22b%22%3A1%2C%22a%22%3A2%7D",
                "null",
                "%5B1%5D",
                "%22x%22",
                "1e400",
                "-5",
                "%7B%22a%22%3A1%2C%22a%22%3A2%7D",
            ])
            .prop_map(str::to_owned),
            ".{0,12}".prop_map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect()),
            "[%a-fA-F0-9+=&]{0,12}",
        ]
    }

    proptest! {
        #[test]
        fn queries_match_the_map_the_pixel_built(
            pairs in proptest::collection::vec((name(), value()), 0..8),
            with_beacon in any::<bool>(),
        ) {
            let mut params: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if with_beacon {
                params.insert(0, "session_id=s&event=e".to_owned());
            }
            let query = params.join("&");
            prop_assert_eq!(from_query(&query), reference::from_query(&query), "{}", query);
        }
    }
}
