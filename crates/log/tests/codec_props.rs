//! Property tests for the codec: decoding never panics, whatever the bytes
//! (random, truncated or bit-flipped encodings), and encoding round-trips.

mod support;

use proptest::prelude::*;
use segmentd_domain::event::{ContactCreated, Event};
use segmentd_domain::{AggregateId, Contact, Decimal, Email, Envelope, Timestamp};
use segmentd_log::codec::{self, EVENT_TYPES};

fn encoded_samples() -> Vec<Vec<u8>> {
    support::samples().iter().map(codec::encode).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = codec::decode(&bytes);
        let _ = codec::decode_aggregate(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_prefix_never_panic(
        type_index in 0..EVENT_TYPES.len(),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let code = EVENT_TYPES[type_index].0.to_le_bytes();
        let mut bytes = vec![1, code[0], code[1], 1];
        bytes.extend_from_slice(&body);
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn truncated_encodings_are_errors(which in 0..EVENT_TYPES.len(), cut in any::<prop::sample::Index>()) {
        let bytes = &encoded_samples()[which];
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decoded");
    }

    #[test]
    fn bit_flips_never_panic_and_what_decodes_is_stable(
        which in 0..EVENT_TYPES.len(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let mut bytes = encoded_samples()[which].clone();
        for (at, bit) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        if let Ok(env) = codec::decode(&bytes) {
            prop_assert_eq!(codec::decode(&codec::encode(&env)), Ok(env));
        }
    }

    #[test]
    fn trailing_bytes_are_errors(which in 0..EVENT_TYPES.len(), extra in prop::collection::vec(any::<u8>(), 1..16)) {
        let mut bytes = encoded_samples()[which].clone();
        bytes.extend_from_slice(&extra);
        prop_assert!(codec::decode(&bytes).is_err());
    }

    #[test]
    fn arbitrary_contacts_round_trip(
        first in ".*",
        city in "\\PC*",
        score in proptest::option::of(any::<i64>()),
        spent in proptest::option::of(any::<i64>()),
        millis in any::<i64>(),
        custom in prop::collection::btree_map("[a-z_-]{1,10}", ".*", 0..5),
        event_id in any::<u128>(),
        command_id in ".{0,40}",
    ) {
        let mut contact = Contact::new(Email::parse("p@example.com").unwrap(), Timestamp(millis));
        contact.first_name = first;
        contact.city = city;
        contact.score = score;
        contact.total_spent = spent.map(Decimal);
        contact.custom = custom;
        let env = Envelope {
            event_id,
            command_id,
            aggregate: AggregateId::contact("org", "p@example.com"),
            actor: "prop".into(),
            time: Timestamp(millis),
            event: Event::ContactCreated(ContactCreated { contact }),
        };
        let bytes = codec::encode(&env);
        prop_assert_eq!(codec::decode_aggregate(&bytes), Ok(env.aggregate.clone()));
        prop_assert_eq!(codec::decode(&bytes), Ok(env));
    }
}

#[test]
fn samples_round_trip() {
    for sample in support::samples() {
        assert_eq!(codec::decode(&codec::encode(&sample)), Ok(sample));
    }
}
