//! Payload index schemas: which payload key is indexed, and as what type.
//! The indexes themselves live in the `vecseg` crate (`payload_index`);
//! the schema is here so [`crate::SegmentEntry`] can create them.

use serde::{Deserialize, Serialize};

/// The type of values a field index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Strings; answers keyword matches.
    Keyword,
    /// Integers (`i64`); answers integer matches and ranges.
    Integer,
    /// Numbers as `f64` (integers included); answers ranges.
    Float,
    /// Booleans; answers boolean matches.
    Bool,
}

impl FieldType {
    /// Stable lowercase name (`keyword`, `integer`, `float`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
        }
    }

    /// The type named `name` (as [`FieldType::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            FieldType::Keyword,
            FieldType::Integer,
            FieldType::Float,
            FieldType::Bool,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// One byte for file headers.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type whose [`FieldType::code`] is `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        [
            FieldType::Keyword,
            FieldType::Integer,
            FieldType::Float,
            FieldType::Bool,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }
}

/// One indexed payload key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// Dotted payload path, as conditions name it.
    pub key: String,
    /// Type of the values indexed.
    pub field_type: FieldType,
    /// Whether this key is the tenant key (the optimizer orders points by it).
    #[serde(default)]
    pub is_tenant: bool,
}

impl FieldSchema {
    /// A schema for `key` of `field_type`, not the tenant key.
    pub fn new(key: impl Into<String>, field_type: FieldType) -> Self {
        FieldSchema {
            key: key.into(),
            field_type,
            is_tenant: false,
        }
    }

    /// This schema marked as the tenant key.
    pub fn tenant(mut self) -> Self {
        self.is_tenant = true;
        self
    }
}
