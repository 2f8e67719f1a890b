//! Properties over generated inputs: codecs keep every value exactly (or
//! refuse it, never change it), sealing round-trips, and any single changed
//! byte makes a token fail to open.

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use session_core::internals::{decode_value, encode_value, CookieSeal};
use session_core::{Codec, CodecError, KeyRing, SealMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Point(i32, i32),
    Named { label: String, weight: Option<u64> },
    Nested(Box<Option<Shape>>),
}

/// A value of most kinds serde can describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    unsigned: u64,
    signed: i64,
    wide: i128,
    float: f64,
    text: String,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    flag: Option<bool>,
    list: Vec<Shape>,
    by_name: HashMap<String, i16>,
    by_number: BTreeMap<u32, String>,
    shape: Shape,
}

fn shape() -> impl Strategy<Value = Shape> {
    let leaf = prop_oneof![
        Just(Shape::Unit),
        (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Shape::Point(x, y)),
        (".{0,8}", any::<Option<u64>>()).prop_map(|(label, weight)| Shape::Named { label, weight }),
    ];
    leaf.prop_recursive(3, 8, 2, |inner| {
        proptest::option::of(inner).prop_map(|s| Shape::Nested(Box::new(s)))
    })
}

fn everything() -> impl Strategy<Value = Everything> {
    (
        (
            any::<u64>(),
            any::<i64>(),
            any::<i128>(),
            any::<f64>(),
            ".{0,16}",
        ),
        (
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<Option<bool>>(),
            proptest::collection::vec(shape(), 0..3),
            proptest::collection::hash_map(".{0,4}", any::<i16>(), 0..3),
            proptest::collection::btree_map(any::<u32>(), ".{0,4}", 0..3),
            shape(),
        ),
    )
        .prop_map(
            |(
                (unsigned, signed, wide, float, text),
                (bytes, flag, list, by_name, by_number, shape),
            )| {
                Everything {
                    unsigned,
                    signed,
                    wide,
                    float,
                    text,
                    bytes,
                    flag,
                    list,
                    by_name,
                    by_number,
                    shape,
                }
            },
        )
}

/// Equality that treats NaN as equal to itself (the bits are kept).
fn same(a: &Everything, b: &Everything) -> bool {
    let float_same =
        a.float.to_bits() == b.float.to_bits() || (a.float.is_nan() && b.float.is_nan());
    float_same
        && Everything {
            float: 0.0,
            ..a.clone()
        } == Everything {
            float: 0.0,
            ..b.clone()
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cbor_keeps_every_value_exactly(value in everything()) {
        let bytes = encode_value(Codec::Cbor, &value).unwrap();
        let back: Everything = decode_value(&bytes).unwrap();
        prop_assert!(same(&value, &back), "{value:?} came back as {back:?}");
    }

    #[test]
    fn json_keeps_a_value_exactly_or_refuses_it(value in everything()) {
        match encode_value(Codec::Json, &value) {
            Ok(bytes) => {
                let back: Everything = decode_value(&bytes).unwrap();
                prop_assert!(same(&value, &back), "{value:?} came back as {back:?}");
            }
            Err(CodecError::Unrepresentable { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn json_keeps_what_it_can_represent(
        unsigned in any::<u64>(),
        signed in any::<i64>(),
        float in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        text in ".{0,32}",
        list in proptest::collection::vec(shape(), 0..4),
    ) {
        let value = (unsigned, signed, float, text, list);
        let bytes = encode_value(Codec::Json, &value).unwrap();
        let back: (u64, i64, f64, String, Vec<Shape>) = decode_value(&bytes).unwrap();
        prop_assert_eq!(back, value);
    }

    #[test]
    fn seal_then_open_is_the_identity(payload in proptest::collection::vec(any::<u8>(), 0..3000), signed in any::<bool>()) {
        let ring = KeyRing::from_secret(b"test secret number 09, 32 bytes!").unwrap();
        let mode = if signed { SealMode::Signed } else { SealMode::Private };
        let token = CookieSeal { ring: &ring, mode, name: "sid" }.seal(1_800_000_000, &payload);
        prop_assert_eq!(CookieSeal { ring: &ring, mode, name: "sid" }.open(1_800_000_000, &token).unwrap(), payload);
    }

    #[test]
    fn any_single_changed_byte_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        signed in any::<bool>(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let ring = KeyRing::from_secret(b"test secret number 09, 32 bytes!").unwrap();
        let mode = if signed { SealMode::Signed } else { SealMode::Private };
        let token = CookieSeal { ring: &ring, mode, name: "sid" }.seal(1_800_000_000, &payload);
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let i = position.index(raw.len());
        raw[i] ^= flip;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        let seal = CookieSeal { ring: &ring, mode, name: "sid" };
        prop_assert!(seal.open(1_800_000_000, &forged).is_err(), "byte {i} ^ {flip:#x} accepted");
    }

    #[test]
    fn garbage_tokens_never_open_and_never_panic(token in ".{0,300}") {
        let ring = KeyRing::from_secret(b"test secret number 09, 32 bytes!").unwrap();
        let private = CookieSeal { ring: &ring, mode: SealMode::Private, name: "sid" };
        prop_assert!(private.open(1_800_000_000, &token).is_err());
    }
}
