//! Payload storage traits: a read half, a write half (clear, flush) and an
//! appendable half (set, overwrite, delete keys).

use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::types::{Payload, PointOffset};

/// Deepest payload nesting [`validate_payload`] accepts.
///
/// Depth counts containers: the payload object itself is level 1 and every
/// object or array nested in it adds one level (scalars add none), so
/// `{"a": {"b": [1]}}` has depth 3. This is how the decoders count too:
/// rmp-serde (the MessagePack codec of the chunked, mmap and RocksDB
/// payload storages) rejects 1,024 nested containers, serde_json (the
/// legacy JSON codec of RocksDB payloads, and JSON text in general) rejects
/// 128. Both decode recursively: rmp-serde takes about 3.5 KiB of stack per
/// level in a debug build (0.5 KiB in release), so on a default 2 MiB
/// thread stack a debug build overflows near 580 levels, before its own
/// limit. 64 is half of the lowest of these, so a payload accepted here
/// always reads back, with about 230 KiB of stack at most.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

// Half of serde_json's limit, the lower of the two decoders'.
const _: () = assert!(MAX_PAYLOAD_DEPTH * 2 <= 128);

/// Check that `payload` can be stored and read back: its nesting depth (see
/// [`MAX_PAYLOAD_DEPTH`] for how it is counted) must not exceed
/// [`MAX_PAYLOAD_DEPTH`].
///
/// A deeper payload would encode fine and then fail every later read, so
/// writers call this before touching any storage. Returns
/// [`StorageError::InvalidArgument`] naming the payload's depth and the
/// limit. Walks the payload with an explicit stack, not recursion, so a
/// payload of any depth is checked in constant stack space.
pub fn validate_payload(payload: &Payload) -> Result<()> {
    let depth = payload_depth(payload);
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(StorageError::InvalidArgument(format!(
            "payload is nested {depth} levels deep, the limit is {MAX_PAYLOAD_DEPTH}"
        )));
    }
    Ok(())
}

/// Nesting depth of `payload` as [`MAX_PAYLOAD_DEPTH`] counts it (an empty
/// or flat payload has depth 1), computed without recursion.
pub fn payload_depth(payload: &Payload) -> usize {
    let mut max = 1;
    // Containers still to visit, with their level.
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    fn push<'a>(stack: &mut Vec<(&'a Value, usize)>, v: &'a Value, level: usize) {
        if matches!(v, Value::Object(_) | Value::Array(_)) {
            stack.push((v, level));
        }
    }
    for v in payload.values() {
        push(&mut stack, v, 2);
    }
    while let Some((value, level)) = stack.pop() {
        max = max.max(level);
        match value {
            Value::Object(map) => map.values().for_each(|v| push(&mut stack, v, level + 1)),
            Value::Array(items) => items.iter().for_each(|v| push(&mut stack, v, level + 1)),
            _ => {}
        }
    }
    max
}

/// Reading payloads by offset.
pub trait PayloadStorageRead: Send + Sync {
    /// The payload at `offset`; an empty object when none is stored.
    fn get(&self, offset: PointOffset) -> Result<Payload>;

    /// Call `f` for every offset holding a non-empty payload, in increasing
    /// offset order; stop early when `f` returns `Ok(false)`.
    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()>;

    /// Number of offsets holding a non-empty payload.
    fn count(&self) -> usize;

    /// A number that grows with every write the backend makes durable, for
    /// backends that have one (RocksDB's sequence number). The segment
    /// records it at each flush and refuses to open a storage whose number
    /// went backwards: flushed writes were lost (e.g. a damaged RocksDB
    /// `MANIFEST` recovered an older state).
    fn durable_sequence(&self) -> Option<u64> {
        None
    }

    /// Bytes this storage occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
    }

    /// Whether payloads can only be cleared, never written (a segment then
    /// keeps its payload indexes in immutable files).
    fn is_immutable(&self) -> bool {
        false
    }
}

/// Clearing and persisting; what immutable storages support.
pub trait PayloadStorage: PayloadStorageRead {
    /// Remove the whole payload of `offset`; returns what was there.
    fn clear(&mut self, offset: PointOffset) -> Result<Payload>;
    /// Make every change durable.
    fn flush(&mut self) -> Result<()>;
}

/// Storages whose payloads can be written.
pub trait AppendablePayloadStorage: PayloadStorage {
    /// Merge `payload`'s keys into the stored payload (keys in `payload` win).
    fn set(&mut self, offset: PointOffset, payload: &Payload) -> Result<()> {
        let mut current = self.get(offset)?;
        for (k, v) in payload {
            current.insert(k.clone(), v.clone());
        }
        self.overwrite(offset, &current)
    }

    /// Replace the stored payload with `payload`.
    fn overwrite(&mut self, offset: PointOffset, payload: &Payload) -> Result<()>;

    /// Remove `keys` from the stored payload; returns the removed values.
    fn delete_keys(&mut self, offset: PointOffset, keys: &[&str]) -> Result<Payload> {
        let mut current = self.get(offset)?;
        let mut removed = Payload::new();
        for key in keys {
            if let Some(v) = current.remove(*key) {
                removed.insert((*key).to_string(), v);
            }
        }
        if !removed.is_empty() {
            self.overwrite(offset, &current)?;
        }
        Ok(removed)
    }
}

/// A payload nested exactly `depth` levels deep (the payload object is
/// level 1): `{"k": [{"k": [ ... 1 ]}]}`, alternating arrays and objects, for
/// tests of [`MAX_PAYLOAD_DEPTH`]. Built without recursion.
pub fn nested_payload(depth: usize) -> Payload {
    let mut v = serde_json::Value::from(1);
    for level in (2..=depth).rev() {
        // Not `json!([v])`: the macro would re-serialise `v`, recursively.
        v = if level % 2 == 0 {
            serde_json::Value::Array(vec![v])
        } else {
            serde_json::Value::Object(Payload::from_iter([("k".to_string(), v)]))
        };
    }
    let mut p = Payload::new();
    p.insert("k".into(), v);
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> Payload {
        nested_payload(depth)
    }

    #[test]
    fn depth_counts_containers_from_the_payload_object() {
        let flat = json!({"a": 1, "b": "x", "c": null});
        assert_eq!(payload_depth(&Payload::new()), 1);
        assert_eq!(payload_depth(flat.as_object().unwrap()), 1);
        let p = json!({"a": {"b": [1]}, "c": [[], {"d": 2}], "e": 3});
        assert_eq!(payload_depth(p.as_object().unwrap()), 3);
        for depth in [1, 2, 3, 10, MAX_PAYLOAD_DEPTH] {
            assert_eq!(payload_depth(&nested(depth)), depth);
        }
    }

    #[test]
    fn depth_at_the_limit_is_accepted_and_one_more_rejected() {
        validate_payload(&nested(MAX_PAYLOAD_DEPTH)).unwrap();
        let err = validate_payload(&nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        let StorageError::InvalidArgument(msg) = &err else {
            panic!("{err:?}");
        };
        assert!(
            msg.contains(&(MAX_PAYLOAD_DEPTH + 1).to_string())
                && msg.contains(&MAX_PAYLOAD_DEPTH.to_string()),
            "{msg}"
        );
        // A deep branch next to shallow ones is found wherever it is.
        let mut p = json!({"a": 1, "b": [1, 2, {"c": 3}]})
            .as_object()
            .unwrap()
            .clone();
        p.insert("z".into(), Value::Object(nested(MAX_PAYLOAD_DEPTH)));
        assert_eq!(payload_depth(&p), MAX_PAYLOAD_DEPTH + 1);
        assert!(validate_payload(&p).is_err());
    }

    #[test]
    fn a_very_deep_payload_is_rejected_without_recursion() {
        // Deep enough that a recursive walk on a small stack would overflow.
        let depth = 200_000;
        let p = nested(depth);
        let check = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let result = validate_payload(&p).map_err(|e| e.to_string());
                // Dropping a `Value` recurses; leak it instead of overflowing.
                std::mem::forget(p);
                result
            })
            .unwrap()
            .join()
            .unwrap();
        let msg = check.unwrap_err();
        assert!(msg.contains("200000 levels"), "{msg}");
    }

    #[test]
    fn the_limit_is_below_what_serde_json_reads_back() {
        let text = serde_json::to_string(&nested(MAX_PAYLOAD_DEPTH)).unwrap();
        let back: Payload = serde_json::from_str(&text).unwrap();
        assert_eq!(back, nested(MAX_PAYLOAD_DEPTH));
        // serde_json's own limit: 127 nested containers parse, 128 do not.
        let at = |depth| serde_json::to_string(&nested(depth)).unwrap();
        assert!(serde_json::from_str::<Payload>(&at(127)).is_ok());
        assert!(serde_json::from_str::<Payload>(&at(128)).is_err());
    }
}
