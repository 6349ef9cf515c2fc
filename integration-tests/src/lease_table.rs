//! The lease table of ferryd replicas in the emulator (moto's DynamoDB): created as deploy/ creates it
//! (String partition key `key`), read to see which replica holds a slot, and the `[lease]` config.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::emulator::Emulator;

/// The table the tests use.
pub const TABLE: &str = "ferry-leases";

/// A DynamoDB client of the emulator.
pub async fn client(emu: &Emulator) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&emu.sdk_config().await)
}

/// Creates [`TABLE`] (on demand, String partition key `key`).
pub async fn create(emu: &Emulator) -> Result<()> {
    client(emu)
        .await
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("key")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await
        .context("creating the lease table")?;
    Ok(())
}

/// The item under `key`, if any (a consistent read).
async fn item(emu: &Emulator, key: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
    let out = client(emu)
        .await
        .get_item()
        .table_name(TABLE)
        .key("key", AttributeValue::S(key.to_string()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out.item)
}

/// The owner of the lease `key` (`group/slot`) as stored, if held; with its epoch.
pub async fn owner(emu: &Emulator, key: &str) -> Result<Option<(String, u64)>> {
    let Some(item) = item(emu, key).await? else {
        return Ok(None);
    };
    let owner = item.get("owner").and_then(|v| v.as_s().ok()).cloned();
    let epoch = item
        .get("epoch")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(owner.map(|o| (o, epoch)))
}

/// Whether the table holds an item under `key`.
pub async fn has_item(emu: &Emulator, key: &str) -> Result<bool> {
    Ok(item(emu, key).await?.is_some())
}

/// The pid in an owner id (`<host>/<pid>/<start>`).
pub fn owner_pid(owner: &str) -> Option<u32> {
    owner.split('/').nth(1)?.parse().ok()
}

/// The `[lease]` table of ferryd's config, with short durations for the tests (a dead replica's lease is
/// taken 4 s after its last renewal).
pub fn toml() -> String {
    format!("\n[lease]\ntable = \"{TABLE}\"\nduration_secs = 4\nrenew_secs = 1\nsafety_secs = 1\n")
}
