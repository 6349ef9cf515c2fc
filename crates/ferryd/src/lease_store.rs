//! The lease table in DynamoDB: `LeaseStore` over `aws-sdk-dynamodb`, one item per (group, slot) under the
//! String partition key `key`, every write a `PutItem` conditional on the version read (or on no item).
//!
//! An item: `key` (S), `owner` (S, absent once released), `epoch` (N), `version` (S), `duration_ms` (N), and
//! `written_at` (N, Unix seconds by the writer's clock, for people only: no replica ever compares it).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use ferry_state_machine::error::{sdk_error, StepError};
use ferry_state_machine::lease::{LeaseRecord, LeaseStore};

/// The table's partition key: a String attribute named `key`.
pub const KEY: &str = "key";

/// The lease table.
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLeaseStore {
    /// A store over `table`, which must exist with the String partition key `key` (deploy/ creates it).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// The record in `item`, or why it is not one (a record ferry did not write, or a hand edit).
pub fn parse_item(item: &HashMap<String, AttributeValue>) -> Result<LeaseRecord, String> {
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let n = |name: &str| -> Result<u64, String> {
        let v = item
            .get(name)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| format!("attribute {name} (N) is missing"))?;
        v.parse()
            .map_err(|e| format!("attribute {name} = {v:?} is not a whole number: {e}"))
    };
    Ok(LeaseRecord {
        owner: s("owner"),
        epoch: n("epoch")?,
        version: s("version").ok_or("attribute version (S) is missing")?,
        duration: Duration::from_millis(n("duration_ms")?),
    })
}

/// The item of `record` under `key`.
pub fn item_of(key: &str, record: &LeaseRecord) -> HashMap<String, AttributeValue> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let millis = u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX);
    let mut item = HashMap::from([
        (KEY.to_string(), AttributeValue::S(key.to_string())),
        (
            "epoch".to_string(),
            AttributeValue::N(record.epoch.to_string()),
        ),
        (
            "version".to_string(),
            AttributeValue::S(record.version.clone()),
        ),
        (
            "duration_ms".to_string(),
            AttributeValue::N(millis.to_string()),
        ),
        ("written_at".to_string(), AttributeValue::N(now.to_string())),
    ]);
    if let Some(owner) = &record.owner {
        item.insert("owner".to_string(), AttributeValue::S(owner.clone()));
    }
    item
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    async fn read(&self, key: &str) -> Result<Option<LeaseRecord>, StepError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb:GetItem", &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        parse_item(&item).map(Some).map_err(|why| {
            StepError::permanent(
                "dynamodb:GetItem",
                format!("lease {key} in table {}: {why}", self.table),
            )
        })
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &LeaseRecord,
    ) -> Result<bool, StepError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(key, new)));
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY),
            Some(v) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", AttributeValue::S(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("dynamodb:PutItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_round_trips_and_a_released_one_has_no_owner() {
        let held = LeaseRecord {
            owner: Some("ferryd-a/1".into()),
            epoch: 7,
            version: "ferryd-a/1#3".into(),
            duration: Duration::from_secs(20),
        };
        let item = item_of("db/2", &held);
        assert_eq!(
            item.get(KEY)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str),
            Some("db/2")
        );
        assert_eq!(parse_item(&item), Ok(held.clone()));
        let released = LeaseRecord {
            owner: None,
            ..held
        };
        let item = item_of("db/2", &released);
        assert!(!item.contains_key("owner"));
        assert_eq!(parse_item(&item), Ok(released));
    }

    #[test]
    fn a_foreign_item_names_what_is_wrong() {
        let mut item = item_of(
            "db/0",
            &LeaseRecord {
                owner: None,
                epoch: 1,
                version: "v".into(),
                duration: Duration::from_secs(20),
            },
        );
        item.insert("epoch".into(), AttributeValue::N("one".into()));
        let err = parse_item(&item).unwrap_err();
        assert!(err.contains("epoch") && err.contains("\"one\""), "{err}");
        item.remove("version");
        item.insert("epoch".into(), AttributeValue::N("1".into()));
        assert_eq!(
            parse_item(&item).unwrap_err(),
            "attribute version (S) is missing"
        );
    }
}
