//! What a verified restore found, per schema (recorded in manifests, shown by `-l`).

/// Per-schema figures of a verified restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaStats {
    pub schema: String,
    pub tables: u64,
    /// Rows counted (`count(*)`) in the tables that have data in the dump.
    pub rows: u64,
}
