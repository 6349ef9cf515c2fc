//! `ferryd doctor`'s checks of the lease table (`[lease] table`): it exists and is active, its key is the
//! String partition key `key` alone, and ferryd may read and conditionally write it (proven by a read and
//! by a `PutItem` whose condition can never hold, so that nothing is written).

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType, TableStatus};
use ferry_state_machine::error::sdk_error;

use super::doctor::Check;
use super::Aws;
use crate::config::Config;
use crate::lease_store::KEY;

/// The probe item's key; it is never written.
const PROBE: &str = "ferryd-doctor-probe";

/// The lease checks, or none without `[lease] table` (one ferryd per queue).
pub(super) async fn checks(aws: &Aws, config: &Config) -> Vec<Check> {
    let Some(table) = &config.lease.table else {
        return vec![Check::pass(
            "lease",
            "no [lease] table: one ferryd per queue (in-process slot locks)",
        )];
    };
    let db = &aws.clients.dynamodb;
    let create = format!("aws dynamodb create-table --table-name {table} --attribute-definitions AttributeName=key,AttributeType=S --key-schema AttributeName=key,KeyType=HASH --billing-mode PAY_PER_REQUEST (deploy/ creates it)");
    let described = match db.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) => {
            let err = sdk_error("dynamodb:DescribeTable", &e);
            let fix = if err.code.as_deref() == Some("ResourceNotFoundException") {
                create
            } else {
                format!("allow dynamodb:DescribeTable on table/{table}")
            };
            return vec![Check::fail("lease table", format!("{table}: {err}"), fix)];
        }
    };
    let mut out = Vec::new();
    let t = described.table();
    let status = t.and_then(|t| t.table_status());
    let keys: Vec<(String, KeyType)> = t
        .map(|t| t.key_schema())
        .unwrap_or_default()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    let key_type = t
        .map(|t| t.attribute_definitions())
        .unwrap_or_default()
        .iter()
        .find(|a| a.attribute_name() == KEY)
        .map(|a| a.attribute_type().clone());
    let shape_ok =
        keys == [(KEY.to_string(), KeyType::Hash)] && key_type == Some(ScalarAttributeType::S);
    if !shape_ok {
        out.push(Check::fail("lease table", format!("{table}: key schema {keys:?} ({key_type:?}); ferry needs the String partition key `key` alone"), create));
    } else if status != Some(&TableStatus::Active) {
        out.push(Check::warn(
            "lease table",
            format!("{table}: status {status:?}, not ACTIVE yet"),
            "wait for the table to become ACTIVE",
        ));
    } else {
        out.push(Check::pass(
            "lease table",
            format!("{table}: ACTIVE, String partition key `key`"),
        ));
    }
    out.push(access(aws, table).await);
    out
}

/// Reads the probe key, then writes it under a condition that never holds: `ConditionalCheckFailed` is
/// the proof that `PutItem` is allowed, and nothing is written.
async fn access(aws: &Aws, table: &str) -> Check {
    const NAME: &str = "lease table access";
    let db = &aws.clients.dynamodb;
    let key = AttributeValue::S(PROBE.to_string());
    let fix = format!("allow dynamodb:GetItem and dynamodb:PutItem on table/{table} (deploy/iam/ferry-policy.json)");
    if let Err(e) = db
        .get_item()
        .table_name(table)
        .key(KEY, key.clone())
        .consistent_read(true)
        .send()
        .await
    {
        return Check::fail(NAME, sdk_error("dynamodb:GetItem", &e).to_string(), fix);
    }
    let put = db
        .put_item()
        .table_name(table)
        .item(KEY, key)
        .condition_expression("attribute_exists(#k) AND attribute_not_exists(#k)")
        .expression_attribute_names("#k", KEY)
        .send()
        .await;
    match put {
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Check::pass(
                NAME,
                "GetItem and conditional PutItem allowed (probed without writing)",
            )
        }
        Ok(_) => Check::warn(
            NAME,
            format!(
                "the probe item {PROBE:?} was written: the table ignored an impossible condition"
            ),
            "check that the table is a real DynamoDB table",
        ),
        Err(e) => Check::fail(NAME, sdk_error("dynamodb:PutItem", &e).to_string(), fix),
    }
}
