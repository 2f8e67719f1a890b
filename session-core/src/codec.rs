//! Codecs: how a session record becomes bytes, and back.
//!
//! Values are held in memory in CBOR's data model ([`ciborium::Value`]), which
//! represents every serde type faithfully. The CBOR codec writes that model
//! as is. The JSON codec writes it only where JSON keeps the value and type
//! exactly; anything else (byte strings, NaN and infinities, non-string map
//! keys, integers beyond 64 bits, CBOR tags) is refused with an error that
//! says what, instead of coming back changed, as Go's JSON stores do with
//! `int64` turning into `float64`.
//!
//! Stored bytes start with a format version and a codec tag, so a record is
//! decoded by the codec that wrote it even after the configuration switches.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::Value;
use serde::{Deserialize, Serialize};

use crate::error::CodecError;
use crate::index::Binding;

/// Version of the stored record format.
const FORMAT_VERSION: u8 = 1;
const TAG_CBOR: u8 = b'C';
const TAG_JSON: u8 = b'J';

/// The serialization of session records.
///
/// ```
/// use session_core::Codec;
/// assert_eq!(Codec::default(), Codec::Cbor);
/// assert_eq!(Codec::Json.name(), "json");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// CBOR (RFC 8949): compact, binary, represents every serde type.
    #[default]
    Cbor,
    /// JSON: readable in a store dump; refuses what it cannot keep exactly.
    Json,
}

impl Codec {
    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Cbor => "cbor",
            Codec::Json => "json",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Codec::Cbor => TAG_CBOR,
            Codec::Json => TAG_JSON,
        }
    }

    /// Checks that `value` survives this codec unchanged.
    pub(crate) fn check(self, value: &Value) -> Result<(), CodecError> {
        match self {
            Codec::Cbor => Ok(()),
            Codec::Json => check_json(value, 0),
        }
    }

    /// Encodes a record with a version and codec header.
    pub(crate) fn encode(self, record: &Record) -> Result<Vec<u8>, CodecError> {
        let wire = WireOut {
            values: &record.values,
            flashes: &record.flashes,
            constants: &record.constants,
            created_at: record.created_at,
            persistent: record.persistent,
            user: record.user.as_ref(),
        };
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT_VERSION);
        out.push(self.tag());
        match self {
            Codec::Cbor => ciborium::into_writer(&wire, &mut out)
                .map_err(|e| CodecError::Serialize(e.to_string()))?,
            Codec::Json => {
                for value in record
                    .values
                    .values()
                    .chain(record.flashes.iter().map(|(_, v)| v))
                {
                    check_json(value, 0)?;
                }
                serde_json::to_writer(&mut out, &wire)
                    .map_err(|e| CodecError::Serialize(e.to_string()))?
            }
        }
        Ok(out)
    }

    /// Decodes bytes written by [`encode`](Self::encode) with any codec.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
        let [version, tag, body @ ..] = bytes else {
            return Err(CodecError::Malformed(
                "record shorter than its header".into(),
            ));
        };
        if *version != FORMAT_VERSION {
            return Err(CodecError::Malformed(
                format!("unknown record format version {version}").into(),
            ));
        }
        let wire: WireIn = match *tag {
            TAG_CBOR => decode_cbor(body)?,
            TAG_JSON => serde_json::from_slice(body)
                .map_err(|e| CodecError::Malformed(e.to_string().into()))?,
            other => {
                return Err(CodecError::Malformed(
                    format!("unknown codec tag {other:#04x}").into(),
                ))
            }
        };
        Ok(Record {
            values: wire.values,
            flashes: wire.flashes,
            constants: wire.constants,
            created_at: wire.created_at,
            persistent: wire.persistent,
            user: wire.user,
        })
    }
}

thread_local! {
    /// ciborium's scratch space. `ciborium::from_reader` zeroes a fresh 4 KiB
    /// buffer on every call, which profiling showed to be 15% of a read-only
    /// request; reusing one per thread keeps the same limits without that cost.
    static CBOR_SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 4096]);
}

fn decode_cbor(body: &[u8]) -> Result<WireIn, CodecError> {
    let malformed =
        |e: ciborium::de::Error<std::io::Error>| CodecError::Malformed(e.to_string().into());
    CBOR_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            ciborium::de::from_reader_with_buffer(body, &mut scratch).map_err(malformed)
        }
        // Re-entered on this thread (not expected): fall back to a fresh buffer.
        Err(_) => ciborium::from_reader(body).map_err(malformed),
    })
}

/// A decoded session: values, pending flashes, constant attribute names and
/// metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    pub(crate) values: BTreeMap<String, Value>,
    /// Pending flashes in the order they were added: (kind, value).
    pub(crate) flashes: Vec<(String, Value)>,
    pub(crate) constants: BTreeSet<String>,
    /// Unix seconds when the session was created (or last renewed).
    pub(crate) created_at: i64,
    pub(crate) persistent: bool,
    /// The user it is signed in as.
    pub(crate) user: Option<Binding>,
}

impl Record {
    /// True when nothing worth storing is left (a signed-in session is
    /// worth storing with no values).
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty() && self.flashes.is_empty() && self.user.is_none()
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "v")]
    values: &'a BTreeMap<String, Value>,
    #[serde(rename = "f", skip_serializing_if = "<[_]>::is_empty")]
    flashes: &'a [(String, Value)],
    #[serde(rename = "k", skip_serializing_if = "BTreeSet::is_empty")]
    constants: &'a BTreeSet<String>,
    #[serde(rename = "c")]
    created_at: i64,
    #[serde(rename = "p", skip_serializing_if = "is_false")]
    persistent: bool,
    #[serde(rename = "u", skip_serializing_if = "Option::is_none")]
    user: Option<&'a Binding>,
}

#[derive(Deserialize)]
struct WireIn {
    #[serde(rename = "v", default)]
    values: BTreeMap<String, Value>,
    #[serde(rename = "f", default)]
    flashes: Vec<(String, Value)>,
    #[serde(rename = "k", default)]
    constants: BTreeSet<String>,
    #[serde(rename = "c")]
    created_at: i64,
    #[serde(rename = "p", default)]
    persistent: bool,
    #[serde(rename = "u", default)]
    user: Option<Binding>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Deepest nesting accepted, so hostile values cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

fn unrepresentable(reason: impl Into<std::borrow::Cow<'static, str>>) -> CodecError {
    CodecError::Unrepresentable {
        codec: "json",
        reason: reason.into(),
    }
}

fn check_json(value: &Value, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_DEPTH {
        return Err(unrepresentable("value nested too deeply"));
    }
    match value {
        Value::Null | Value::Bool(_) | Value::Text(_) => Ok(()),
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i64::try_from(i).is_ok() || u64::try_from(i).is_ok() {
                Ok(())
            } else {
                Err(unrepresentable(format!(
                    "integer {i} is outside the 64-bit range"
                )))
            }
        }
        Value::Float(f) if f.is_finite() => Ok(()),
        Value::Float(f) => Err(unrepresentable(format!(
            "float {f} (JSON has no NaN or infinity)"
        ))),
        Value::Bytes(_) => Err(unrepresentable("byte string (JSON has no bytes type)")),
        Value::Tag(tag, _) => Err(unrepresentable(format!(
            "CBOR tag {tag} (for example an integer wider than 64 bits)"
        ))),
        Value::Array(items) => items.iter().try_for_each(|v| check_json(v, depth + 1)),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| match k {
            Value::Text(_) => check_json(v, depth + 1),
            _ => Err(unrepresentable("map with a non-string key")),
        }),
        _ => Err(unrepresentable("unsupported value")),
    }
}

/// Serializes a typed value into the session's value model.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, CodecError> {
    Value::serialized(value).map_err(|e| CodecError::Serialize(e.to_string()))
}

/// Deserializes a value of the session's model as `T`.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, CodecError> {
    value
        .deserialized()
        .map_err(|e| CodecError::Deserialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;

    use super::*;

    fn record_with(value: Value) -> Record {
        let mut r = Record {
            created_at: 1_700_000_000,
            ..Record::default()
        };
        r.values.insert("k".into(), value);
        r
    }

    /// Encodes through `codec` and decodes back as T.
    fn through<T: Serialize + DeserializeOwned>(codec: Codec, v: &T) -> Result<T, CodecError> {
        let value = to_value(v)?;
        codec.check(&value)?;
        let bytes = codec.encode(&record_with(value))?;
        let back = Codec::decode(&bytes)?;
        from_value(&back.values["k"])
    }

    fn exact<T: Serialize + DeserializeOwned + PartialEq + Debug>(codec: Codec, v: T) {
        assert_eq!(through(codec, &v).unwrap(), v, "{codec:?}");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Inner {
        Unit,
        Tuple(u8, String),
        Struct { a: Option<i32> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Outer {
        Wrap(Inner),
        List(Vec<Inner>),
    }

    #[test]
    fn both_codecs_keep_common_types_exactly() {
        for codec in [Codec::Cbor, Codec::Json] {
            exact(codec, u64::MAX);
            exact(codec, (1u64 << 53) + 1);
            exact(codec, i64::MIN);
            exact(codec, -1i8);
            exact(codec, 0.1f64);
            exact(codec, 3.0f64);
            // Found by the property tests: needs serde_json's exact float parsing.
            exact(codec, 5.496517236287149e298f64);
            exact(codec, 1.1f32);
            exact(codec, "text".to_string());
            exact(codec, Some(5u8));
            exact(codec, None::<u8>);
            exact(codec, vec![Some(1), None]);
            exact(codec, Outer::Wrap(Inner::Struct { a: Some(-3) }));
            exact(
                codec,
                Outer::List(vec![Inner::Unit, Inner::Tuple(7, "x".into())]),
            );
            exact(codec, HashMap::from([("a".to_string(), 1u32)]));
            exact(codec, (1u8, "two".to_string(), [3u16; 3]));
            exact(codec, 12i128);
            // A Vec<u8> without serde_bytes is a sequence of integers: fine.
            exact(codec, vec![0u8, 255]);
        }
    }

    #[test]
    fn cbor_keeps_what_json_cannot() {
        exact(Codec::Cbor, i128::MIN / 3);
        exact(Codec::Cbor, u128::MAX);
        exact(
            Codec::Cbor,
            serde_bytes::ByteBuf::from(vec![0u8, 1, 2, 255]),
        );
        exact(Codec::Cbor, HashMap::from([(1u32, "one".to_string())]));
        exact(Codec::Cbor, f64::INFINITY);
        // Strings and bytes longer than the decoder's scratch space.
        exact(Codec::Cbor, "é".repeat(6000));
        exact(Codec::Cbor, serde_bytes::ByteBuf::from(vec![3u8; 9000]));
        exact(
            Codec::Cbor,
            HashMap::from([("k".repeat(5000), "v".repeat(5000))]),
        );
        assert!(through(Codec::Cbor, &f64::NAN).unwrap().is_nan());
    }

    fn refused<T: Serialize + DeserializeOwned>(v: T, needle: &str) {
        let err = through(Codec::Json, &v).map(|_| ()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CodecError::Unrepresentable { .. }), "{msg}");
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }

    #[test]
    fn json_refuses_with_a_reason() {
        refused(u128::MAX, "tag");
        refused(i128::MIN, "tag");
        refused(serde_bytes::ByteBuf::from(vec![1u8]), "byte string");
        refused(f64::NAN, "NaN");
        refused(f64::NEG_INFINITY, "NaN or infinity");
        refused(HashMap::from([(1u32, 2u32)]), "non-string key");
        refused(vec![HashMap::from([((1u8, 2u8), 2u32)])], "non-string key");
    }

    #[test]
    fn json_is_readable() {
        let bytes = Codec::Json
            .encode(&record_with(to_value("hi").unwrap()))
            .unwrap();
        let text = std::str::from_utf8(&bytes[2..]).unwrap();
        assert_eq!(text, r#"{"v":{"k":"hi"},"c":1700000000}"#);
        assert_eq!(&bytes[..2], &[FORMAT_VERSION, TAG_JSON]);
    }

    #[test]
    fn decode_reads_the_tag_not_the_config() {
        let mut r = record_with(to_value(&7u8).unwrap());
        r.flashes.push(("info".into(), to_value("hello").unwrap()));
        r.constants.insert("k".into());
        r.persistent = true;
        for codec in [Codec::Cbor, Codec::Json] {
            assert_eq!(Codec::decode(&codec.encode(&r).unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let good = Codec::Cbor.encode(&record_with(Value::Bool(true))).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![FORMAT_VERSION],
            vec![9, TAG_CBOR, 0xa0],
            vec![FORMAT_VERSION, b'X', 0xa0],
            vec![FORMAT_VERSION, TAG_JSON, b'{'],
            good[..good.len() - 1].to_vec(),
            vec![FORMAT_VERSION, TAG_CBOR, 0xff, 0xff, 0xff],
        ];
        for case in cases {
            assert!(
                matches!(Codec::decode(&case), Err(CodecError::Malformed(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn wrong_type_is_a_deserialize_error() {
        let v = to_value("text").unwrap();
        assert!(matches!(
            from_value::<u32>(&v),
            Err(CodecError::Deserialize(_))
        ));
    }
}
