//! Test data and a deterministic generator shared by the checks.

use serde_json::json;

use crate::element::VectorElement;
use crate::types::{Payload, PointId, Version};
use crate::Distance;

/// Small deterministic generator (SplitMix64) so failures reproduce.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A random vector of `dim` components in `[-1, 1)`, never all zero.
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
        if let Some(first) = v.first_mut() {
            *first += 2.0;
        }
        v
    }

    /// A small random payload with a tenant keyword, an integer and a float.
    pub fn payload(&mut self) -> Payload {
        let tenant = format!("t{}", self.below(3));
        let n = self.below(10) as i64;
        let v = json!({ "tenant": tenant, "n": n, "x": self.unit() as f64, "tags": ["a", "b"] });
        v.as_object().cloned().unwrap_or_default()
    }
}

/// Vectors (in stored form) plus deleted flags, for building vector storages.
#[derive(Debug, Clone)]
pub struct VectorData {
    /// Dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// The vectors, already preprocessed for `distance`.
    pub vectors: Vec<Vec<f32>>,
    /// Deleted flag per vector.
    pub deleted: Vec<bool>,
}

impl VectorData {
    /// `n` random vectors of `dim`, every 7th one deleted.
    pub fn random(n: usize, dim: usize, distance: Distance, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let vectors = (0..n)
            .map(|_| {
                let mut v = rng.vector(dim);
                f32::preprocess(distance, &mut v).expect("random vectors are never zero");
                v
            })
            .collect();
        VectorData {
            dim,
            distance,
            vectors,
            deleted: (0..n).map(|i| i % 7 == 3).collect(),
        }
    }
}

/// A point as the reference model keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPoint {
    /// External id.
    pub id: PointId,
    /// Version.
    pub version: Version,
    /// Raw vector as given (not normalised).
    pub vector: Vec<f32>,
    /// Payload.
    pub payload: Payload,
}

impl ModelPoint {
    /// `n` random points with numeric and UUID ids mixed, versions 1..=n.
    pub fn random_points(n: usize, dim: usize, seed: u64) -> Vec<ModelPoint> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| ModelPoint {
                id: if i % 5 == 4 {
                    PointId::Uuid(uuid::Uuid::from_u128(
                        ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128,
                    ))
                } else {
                    PointId::Num(i as u64 * 3 + 1)
                },
                version: i as Version + 1,
                vector: rng.vector(dim),
                payload: rng.payload(),
            })
            .collect()
    }

    /// The vector in the form the segment stores it.
    pub fn stored_vector(&self, distance: Distance) -> Vec<f32> {
        let mut v = self.vector.clone();
        f32::preprocess(distance, &mut v).expect("model vectors are valid");
        v
    }
}
