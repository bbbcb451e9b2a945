//! Payload nesting depth: whatever `vecseg_traits::validate_payload` accepts
//! encodes and decodes with the MessagePack codec (rmp-serde) of the
//! chunked storage, and rmp-serde's own limit is far above
//! `MAX_PAYLOAD_DEPTH`. A payload past the decoder's limit encodes fine and
//! then cannot be read back, which is what the validation prevents.

use serde_json::Value;
use vecseg_chunked::{ChunkedPayloadOptions, ChunkedPayloadStorage};
use vecseg_traits::{
    nested_payload, payload_depth, validate_payload, AppendablePayloadStorage, Payload,
    PayloadStorage, PayloadStorageRead, StorageError, MAX_PAYLOAD_DEPTH,
};

/// [`nested_payload`] with a second, flat key beside the deep one.
fn nested(depth: usize) -> Payload {
    let mut p = nested_payload(depth);
    p.insert("tenant".into(), Value::from("acme"));
    p
}

// Also well below serde_json's limit (128 nested containers fail).
const _: () = assert!(MAX_PAYLOAD_DEPTH * 2 <= 128);

#[test]
fn a_payload_at_the_limit_round_trips_through_messagepack() {
    let p = nested(MAX_PAYLOAD_DEPTH);
    assert_eq!(payload_depth(&p), MAX_PAYLOAD_DEPTH);
    validate_payload(&p).unwrap();
    let bytes = ChunkedPayloadStorage::encode(&p).unwrap();
    assert_eq!(ChunkedPayloadStorage::decode(&bytes).unwrap(), p);

    // And through a storage on disk, across a reopen.
    let dir = tempfile::tempdir().unwrap();
    let mut s =
        ChunkedPayloadStorage::create(dir.path(), ChunkedPayloadOptions::default()).unwrap();
    s.overwrite(0, &p).unwrap();
    assert_eq!(s.get(0).unwrap(), p);
    s.flush().unwrap();
    drop(s);
    let s = ChunkedPayloadStorage::open(dir.path()).unwrap();
    assert_eq!(s.get(0).unwrap(), p);
}

/// Run `f` on a thread with a `stack`-byte stack.
fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_payload_at_the_limit_decodes_on_a_small_stack() {
    // rmp-serde decodes recursively: about 3.5 KiB of stack per level in a
    // debug build, 0.5 KiB in release. A quarter of the default 2 MiB
    // thread stack is plenty at the limit.
    let p = nested(MAX_PAYLOAD_DEPTH);
    let bytes = ChunkedPayloadStorage::encode(&p).unwrap();
    let back = on_stack(512 << 10, move || {
        ChunkedPayloadStorage::decode(&bytes).unwrap()
    });
    assert_eq!(back, p);
}

#[test]
fn rmp_serde_reads_1023_levels_and_the_limit_is_far_below() {
    // rmp-serde's decoder starts with a depth budget of 1024 and fails when
    // it reaches 0: 1023 nested containers decode, 1024 do not. (In a debug
    // build 1023 levels need more than the default 2 MiB of stack, hence
    // the big stack here.)
    on_stack(64 << 20, || {
        for depth in [MAX_PAYLOAD_DEPTH + 1, 128, 1023] {
            let p = nested(depth);
            let bytes = ChunkedPayloadStorage::encode(&p).unwrap();
            assert_eq!(ChunkedPayloadStorage::decode(&bytes).unwrap(), p, "{depth}");
            assert!(validate_payload(&p).is_err(), "{depth}");
        }
        let p = nested(1024);
        let bytes = ChunkedPayloadStorage::encode(&p).unwrap();
        let err = ChunkedPayloadStorage::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("depth limit"), "{err}");
        match validate_payload(&p) {
            Err(StorageError::InvalidArgument(msg)) => {
                assert!(
                    msg.contains("1024") && msg.contains(&MAX_PAYLOAD_DEPTH.to_string()),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
    });
}
