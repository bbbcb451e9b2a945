//! The operations a collection logs before applying them, and their
//! encoding in a WAL entry.
//!
//! An entry is MessagePack (`rmp-serde`, the encoding mmap payloads use) of
//! [`LoggedOperation`]: the format version of the operation encoding and
//! the [`Operation`]. Vectors are stored as raw little-endian bytes (one
//! MessagePack `bin`), not as arrays of floats, which would cost a marker
//! byte per component. A new kind of operation is a new variant; a record
//! of a format this build does not know is an error, never skipped.

use serde::{Deserialize, Serialize};
use vecseg_traits::{FieldSchema, Payload, PointId, Result, StorageError};

/// Format version of the operation encoding.
pub const OPERATION_FORMAT_VERSION: u16 = 1;

/// One point of an upsert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointData {
    /// External id.
    pub id: PointId,
    /// The vector as given.
    #[serde(with = "f32_bytes")]
    pub vector: Vec<f32>,
    /// The whole payload.
    pub payload: Payload,
}

/// A change to a collection, as written to the WAL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// Insert or replace these points (one version for the batch).
    UpsertPoints(Vec<PointData>),
    /// Delete these points.
    DeletePoints(Vec<PointId>),
    /// Merge `payload` into the payloads of `ids`.
    SetPayload {
        /// Points to change.
        ids: Vec<PointId>,
        /// Keys and values to merge in.
        payload: Payload,
    },
    /// Replace the payloads of `ids` with `payload`.
    OverwritePayload {
        /// Points to change.
        ids: Vec<PointId>,
        /// The new payload.
        payload: Payload,
    },
    /// Remove `keys` from the payloads of `ids`.
    DeletePayloadKeys {
        /// Points to change.
        ids: Vec<PointId>,
        /// Top-level keys to remove.
        keys: Vec<String>,
    },
    /// Remove the whole payloads of `ids`.
    ClearPayload(Vec<PointId>),
    /// Index a payload key in every segment (and every later one).
    CreateFieldIndex(FieldSchema),
    /// Drop the index of a payload key everywhere.
    DropFieldIndex(String),
}

/// What a WAL entry holds: the encoding's format version and the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOperation {
    /// [`OPERATION_FORMAT_VERSION`] of the writer.
    pub format: u16,
    /// The operation.
    pub operation: Operation,
}

impl Operation {
    /// The bytes of a WAL entry holding this operation.
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode_logged(self)
    }

    /// The bytes of a WAL entry holding `UpsertPoints(points)`, without
    /// moving the points into an [`Operation`] (the same bytes as
    /// [`encode`](Self::encode) of that operation).
    pub fn encode_upsert(points: &[PointData]) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        enum BorrowedOperation<'a> {
            UpsertPoints(&'a [PointData]),
        }
        encode_logged(&BorrowedOperation::UpsertPoints(points))
    }

    /// Decode a WAL entry written by [`encode`](Self::encode); `what` names
    /// the entry in errors (e.g. the WAL directory and sequence number).
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        let logged: LoggedOperation = rmp_serde::from_slice(bytes).map_err(|e| {
            StorageError::corrupted(
                std::path::Path::new(what),
                format!("undecodable operation: {e}"),
            )
        })?;
        if logged.format != OPERATION_FORMAT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path: what.into(),
                found: u32::from(logged.format),
                supported: u32::from(OPERATION_FORMAT_VERSION),
            });
        }
        Ok(logged.operation)
    }
}

/// MessagePack of a [`LoggedOperation`] whose operation is `operation`.
fn encode_logged<O: Serialize>(operation: &O) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Borrowed<'a, O> {
        format: u16,
        operation: &'a O,
    }
    rmp_serde::to_vec_named(&Borrowed {
        format: OPERATION_FORMAT_VERSION,
        operation,
    })
    .map_err(|e| StorageError::Codec(Box::new(e)))
}

/// `Vec<f32>` as one MessagePack `bin` of little-endian bytes.
mod f32_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        #[cfg(target_endian = "little")]
        {
            s.serialize_bytes(bytemuck::cast_slice(v))
        }
        #[cfg(not(target_endian = "little"))]
        {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            s.serialize_bytes(&bytes)
        }
    }

    struct BytesVisitor;

    impl Visitor<'_> for BytesVisitor {
        type Value = Vec<f32>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("little-endian f32 bytes")
        }

        fn visit_bytes<E: Error>(self, b: &[u8]) -> Result<Vec<f32>, E> {
            if !b.len().is_multiple_of(4) {
                return Err(E::custom(format!("{} bytes are not whole f32s", b.len())));
            }
            Ok(b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecseg_traits::FieldType;

    fn payload(v: serde_json::Value) -> Payload {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_operation_round_trips() {
        let uuid = PointId::Uuid(uuid::Uuid::from_u128(0x1234_5678_9abc));
        let ops = vec![
            Operation::UpsertPoints(vec![
                PointData {
                    id: PointId::Num(7),
                    vector: vec![1.5, -0.0, f32::MIN_POSITIVE, 3.25],
                    payload: payload(
                        serde_json::json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}}),
                    ),
                },
                PointData {
                    id: uuid,
                    vector: vec![],
                    payload: Payload::new(),
                },
            ]),
            Operation::DeletePoints(vec![PointId::Num(1), uuid]),
            Operation::SetPayload {
                ids: vec![PointId::Num(u64::MAX)],
                payload: payload(serde_json::json!({"k": -3})),
            },
            Operation::OverwritePayload {
                ids: vec![uuid],
                payload: Payload::new(),
            },
            Operation::DeletePayloadKeys {
                ids: vec![PointId::Num(0)],
                keys: vec!["a".into(), "ü".into()],
            },
            Operation::ClearPayload(vec![]),
            Operation::CreateFieldIndex(FieldSchema::new("tenant", FieldType::Keyword).tenant()),
            Operation::DropFieldIndex("price".into()),
        ];
        for op in ops {
            let bytes = op.encode().unwrap();
            if let Operation::UpsertPoints(points) = &op {
                assert_eq!(Operation::encode_upsert(points).unwrap(), bytes);
            }
            assert_eq!(Operation::decode(&bytes, "wal#1").unwrap(), op);
        }
    }

    #[test]
    fn vectors_take_four_bytes_per_component() {
        let op = Operation::UpsertPoints(vec![PointData {
            id: PointId::Num(1),
            vector: vec![0.5; 128],
            payload: Payload::new(),
        }]);
        let len = op.encode().unwrap().len();
        assert!((512..600).contains(&len), "{len} bytes");
    }

    #[test]
    fn unknown_formats_and_garbage_are_errors() {
        let op = Operation::ClearPayload(vec![PointId::Num(3)]);
        #[derive(Serialize)]
        struct Future<'a> {
            format: u16,
            operation: &'a Operation,
        }
        let future = rmp_serde::to_vec_named(&Future {
            format: 99,
            operation: &op,
        })
        .unwrap();
        assert!(matches!(
            Operation::decode(&future, "wal#9"),
            Err(StorageError::UnsupportedVersion { found: 99, .. })
        ));
        assert!(matches!(
            Operation::decode(b"\xc1garbage", "wal#9"),
            Err(StorageError::Corrupted { .. })
        ));
    }
}
