//! OTLP/JSON into OTLP protobuf, by the official descriptors (`proto/opentelemetry/`, kept by
//! the build as `otlp.bin`), so inlet holds one format from there on and produces what a
//! Collector's kafka receiver reads.
//!
//! The OTLP specification's JSON mapping is proto3's, with its exceptions, all honoured here:
//!
//! - `traceId`, `spanId` and `parentSpanId` are hex, not base64 (opentelemetry-js#3875 is a
//!   receiver that got this wrong); other `bytes` are base64;
//! - field names in lowerCamelCase, or as the `.proto` spells them;
//! - enums as integers or as their names;
//! - 64-bit integers as strings or numbers; doubles as numbers or `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`;
//! - unknown fields are ignored, and `null` is a field left out.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value};

use super::wire::open_delimited;

/// The body is no OTLP/JSON request: why, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson(pub String);

/// `body`, OTLP/JSON of the message `message` (its full name), as protobuf.
pub fn to_protobuf(message: &str, body: &[u8]) -> Result<Vec<u8>, NotJson> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| NotJson(format!("the body is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(NotJson("the body is not a JSON object".into()));
    };
    let descriptor = DESCRIPTORS
        .messages
        .get(message)
        .ok_or_else(|| NotJson(format!("no message {message}")))?;
    let mut out = Vec::with_capacity(body.len() / 2);
    encode_message(descriptor, &object, &mut out, "")?;
    Ok(out)
}

/// The OTLP messages and enums, by full name (without the leading dot).
struct Descriptors {
    messages: HashMap<String, Vec<FieldInfo>>,
    enums: HashMap<String, HashMap<String, i32>>,
}

/// One field of a message, as the encoder needs it.
struct FieldInfo {
    number: u32,
    name: String,
    json_name: String,
    kind: Type,
    repeated: bool,
    /// The message or enum it holds (full name).
    type_name: String,
    /// A trace or span id: hex in OTLP/JSON.
    hex: bool,
}

static DESCRIPTORS: LazyLock<Descriptors> = LazyLock::new(|| {
    let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/otlp.bin"));
    let set = prost_types::FileDescriptorSet::decode(&bytes[..]).expect("the build's descriptors");
    let mut descriptors = Descriptors {
        messages: HashMap::new(),
        enums: HashMap::new(),
    };
    for file in set.file {
        let package = file.package().to_owned();
        for message in &file.message_type {
            add_message(&mut descriptors, &package, message);
        }
        for enumeration in &file.enum_type {
            add_enum(&mut descriptors, &package, enumeration);
        }
    }
    descriptors
});

fn add_message(to: &mut Descriptors, scope: &str, message: &prost_types::DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    let fields = message
        .field
        .iter()
        .map(|field| {
            let kind = field.r#type();
            FieldInfo {
                number: field.number() as u32,
                name: field.name().to_owned(),
                json_name: camel(field.name()),
                kind,
                repeated: field.label() == Label::Repeated,
                type_name: field.type_name().trim_start_matches('.').to_owned(),
                hex: kind == Type::Bytes
                    && matches!(field.name(), "trace_id" | "span_id" | "parent_span_id"),
            }
        })
        .collect();
    for nested in &message.nested_type {
        add_message(to, &name, nested);
    }
    for enumeration in &message.enum_type {
        add_enum(to, &name, enumeration);
    }
    to.messages.insert(name, fields);
}

fn add_enum(to: &mut Descriptors, scope: &str, enumeration: &prost_types::EnumDescriptorProto) {
    let values = enumeration
        .value
        .iter()
        .map(|v| (v.name().to_owned(), v.number()))
        .collect();
    to.enums
        .insert(format!("{scope}.{}", enumeration.name()), values);
}

/// `snake_case` as proto3's JSON names it: `lowerCamelCase`.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

fn encode_message(
    fields: &[FieldInfo],
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), NotJson> {
    for (name, value) in object {
        let Some(field) = fields
            .iter()
            .find(|f| f.json_name == *name || f.name == *name)
        else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let path = format!("{path}{}{name}", if path.is_empty() { "" } else { "." });
        match (field.repeated, value) {
            (false, value) => encode_field(field, value, out, &path)?,
            (true, Value::Array(values)) if packable(field.kind) => {
                let mut packed = Vec::new();
                for (i, value) in values.iter().enumerate() {
                    scalar(field, value, &mut packed, &format!("{path}[{i}]"))?;
                }
                open_delimited(field.number, packed.len(), out);
                out.extend_from_slice(&packed);
            }
            (true, Value::Array(values)) => {
                for (i, value) in values.iter().enumerate() {
                    encode_field(field, value, out, &format!("{path}[{i}]"))?;
                }
            }
            (true, _) => return Err(NotJson(format!("`{path}` must be an array"))),
        }
    }
    Ok(())
}

/// Whether repeated values of `kind` are packed (every scalar but strings and bytes).
fn packable(kind: Type) -> bool {
    !matches!(
        kind,
        Type::String | Type::Bytes | Type::Message | Type::Group
    )
}

/// One value of `field`, with its key.
fn encode_field(
    field: &FieldInfo,
    value: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), NotJson> {
    let wrong = |what: &str| NotJson(format!("`{path}` must be {what}"));
    match field.kind {
        Type::Message => {
            let Value::Object(object) = value else {
                return Err(wrong("an object"));
            };
            let inner = DESCRIPTORS
                .messages
                .get(&field.type_name)
                .ok_or_else(|| wrong("a known message"))?;
            let mut buf = Vec::new();
            encode_message(inner, object, &mut buf, path)?;
            open_delimited(field.number, buf.len(), out);
            out.extend_from_slice(&buf);
        }
        Type::String => {
            let text = value.as_str().ok_or_else(|| wrong("a string"))?;
            open_delimited(field.number, text.len(), out);
            out.extend_from_slice(text.as_bytes());
        }
        Type::Bytes => {
            let text = value.as_str().ok_or_else(|| wrong("a string"))?;
            let bytes = match field.hex {
                true => hex::decode(text).map_err(|_| wrong("hex"))?,
                false => base64(text).ok_or_else(|| wrong("base64"))?,
            };
            open_delimited(field.number, bytes.len(), out);
            out.extend_from_slice(&bytes);
        }
        _ => {
            let wire = match field.kind {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => WireType::SixtyFourBit,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => WireType::ThirtyTwoBit,
                _ => WireType::Varint,
            };
            encode_key(field.number, wire, out);
            scalar(field, value, out, path)?;
        }
    }
    Ok(())
}

/// A scalar's value, without its key.
fn scalar(field: &FieldInfo, value: &Value, out: &mut Vec<u8>, path: &str) -> Result<(), NotJson> {
    let wrong = |what: &str| NotJson(format!("`{path}` must be {what}"));
    match field.kind {
        Type::Double => out.extend_from_slice(
            &double(value)
                .ok_or_else(|| wrong("a number"))?
                .to_le_bytes(),
        ),
        Type::Float => out.extend_from_slice(
            &(double(value).ok_or_else(|| wrong("a number"))? as f32).to_le_bytes(),
        ),
        Type::Bool => encode_varint(
            u64::from(value.as_bool().ok_or_else(|| wrong("true or false"))?),
            out,
        ),
        Type::Enum => {
            let number = match value {
                Value::String(name) => DESCRIPTORS
                    .enums
                    .get(&field.type_name)
                    .and_then(|values| values.get(name.as_str()))
                    .copied()
                    .ok_or_else(|| wrong("a value of its enum"))?,
                value => integer(value)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| wrong("a value of its enum"))?,
            };
            encode_varint(i64::from(number) as u64, out);
        }
        Type::Uint64 | Type::Fixed64 | Type::Uint32 | Type::Fixed32 => {
            let n = unsigned(value).ok_or_else(|| wrong("an unsigned integer"))?;
            match field.kind {
                Type::Uint64 => encode_varint(n, out),
                Type::Fixed64 => out.extend_from_slice(&n.to_le_bytes()),
                Type::Uint32 => encode_varint(
                    u64::from(u32::try_from(n).map_err(|_| wrong("32-bit"))?),
                    out,
                ),
                _ => out.extend_from_slice(
                    &u32::try_from(n).map_err(|_| wrong("32-bit"))?.to_le_bytes(),
                ),
            }
        }
        _ => {
            let n = integer(value).ok_or_else(|| wrong("an integer"))?;
            let n32 = || i32::try_from(n).map_err(|_| wrong("a 32-bit integer"));
            match field.kind {
                Type::Int64 => encode_varint(n as u64, out),
                Type::Int32 => encode_varint(i64::from(n32()?) as u64, out),
                Type::Sint64 => encode_varint(((n << 1) ^ (n >> 63)) as u64, out),
                Type::Sint32 => {
                    let n = n32()?;
                    encode_varint(u64::from(((n << 1) ^ (n >> 31)) as u32), out)
                }
                Type::Sfixed64 => out.extend_from_slice(&n.to_le_bytes()),
                Type::Sfixed32 => out.extend_from_slice(&n32()?.to_le_bytes()),
                _ => return Err(wrong("a supported type")),
            }
        }
    }
    Ok(())
}

/// A signed integer given as a number or a string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| whole(n.as_f64()?)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An unsigned integer given as a number or a string.
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            (f >= 0.0).then(|| whole(f)).flatten().map(|n| n as u64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `f` if it is a whole number within `i64`.
fn whole(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

/// A double given as a number, a numeric string, or proto3's names of the special values.
fn double(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// Base64 as proto3's JSON allows it: standard or URL-safe, padded or not.
fn base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}
