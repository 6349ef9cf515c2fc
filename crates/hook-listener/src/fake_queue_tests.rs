//! The in-memory queue's own tests, on paused time.

use ferry_state_machine::Disposition;

use super::*;

const VIS: Duration = Duration::from_secs(30);

async fn delete_one(q: &FakeQueue, handle: &str) -> Result<(), StepError> {
    let mut results = q.delete_batch(&[handle.to_string()]).await?;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

async fn change_one(q: &FakeQueue, handle: &str, timeout: Duration) -> Result<(), StepError> {
    let change = VisibilityChange {
        receipt_handle: handle.to_string(),
        timeout,
    };
    let mut results = q.change_visibility_batch(&[change]).await?;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

#[tokio::test(start_paused = true)]
async fn visibility_hides_then_returns_a_message_with_a_new_handle() {
    let q = FakeQueue::new(VIS, None);
    let id = q.push("a");
    let first = q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((q.in_flight(), q.visible()), (1, 0));
    let began = Instant::now();
    let second = q.receive(10, Duration::from_secs(20)).await.unwrap();
    assert!(second.is_empty(), "still invisible within a 20 s poll");
    assert_eq!(began.elapsed(), Duration::from_secs(20));
    let third = q.receive(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(third.len(), 1, "visible again after 30 s");
    assert_eq!(Instant::now() - began, VIS);
    assert_ne!(third[0].receipt_handle, first[0].receipt_handle);
    assert_eq!(q.receive_count(&id), Some(2));
    // The stale handle neither deletes nor fails; the fresh one deletes.
    delete_one(&q, &first[0].receipt_handle).await.unwrap();
    assert_eq!(q.len(), 1);
    delete_one(&q, &third[0].receipt_handle).await.unwrap();
    assert!(q.is_empty());
    assert_eq!(q.deleted(), vec![id]);
    delete_one(&q, &third[0].receipt_handle).await.unwrap();
    let e = delete_one(&q, "nonsense").await.unwrap_err();
    assert_eq!(e.disposition, Disposition::Permanent);
    assert_eq!(e.code.as_deref(), Some("ReceiptHandleIsInvalid"));
}

#[tokio::test(start_paused = true)]
async fn long_poll_wakes_on_push() {
    let q = FakeQueue::new(VIS, None);
    let q2 = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        q2.push("late");
    });
    let began = Instant::now();
    let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(began.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn dead_letters_after_max_receives_and_extends_visibility() {
    let q = FakeQueue::new(VIS, Some(2));
    let id = q.push("poison");
    for _ in 0..2 {
        assert_eq!(
            q.receive(1, Duration::from_secs(20)).await.unwrap().len(),
            1
        );
        tokio::time::sleep(VIS).await;
    }
    assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(q.dead_lettered(), vec![id]);
    assert!(q.is_empty());

    let id = q.push("b");
    let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    change_one(&q, &m.receipt_handle, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(q.in_flight(), 1, "extended past the original 30 s");
    tokio::time::sleep(Duration::from_secs(11)).await;
    let e = change_one(&q, &m.receipt_handle, VIS).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("MessageNotInflight"));
    assert_eq!(q.receive_count(&id), Some(1));
    assert_eq!(
        q.calls(),
        QueueCalls {
            receive: 4,
            change_visibility_batch: 2,
            change_visibility_entries: 2,
            ..QueueCalls::default()
        }
    );
    assert!(
        q.receive(11, Duration::ZERO).await.is_err(),
        "SQS rejects batches over 10"
    );
}

#[tokio::test(start_paused = true)]
async fn batch_calls_answer_per_entry_in_order_and_check_their_size() {
    let q = FakeQueue::new(VIS, None);
    let ids: Vec<String> = (0..3).map(|i| q.push(format!("m{i}"))).collect();
    let got = q.receive(10, Duration::ZERO).await.unwrap();
    let mut handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    handles.insert(1, "nonsense".into());

    let changes: Vec<VisibilityChange> = handles
        .iter()
        .map(|h| VisibilityChange {
            receipt_handle: h.clone(),
            timeout: Duration::from_secs(90),
        })
        .collect();
    let results = q.change_visibility_batch(&changes).await.unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().code.as_deref(),
        Some("ReceiptHandleIsInvalid")
    );
    assert_eq!(q.extensions().len(), 3);

    let results = q.delete_batch(&handles).await.unwrap();
    assert!(results[1].is_err(), "the unknown handle fails alone");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert_eq!(q.deleted(), ids);
    assert!(q.is_empty());

    let empty = q.delete_batch(&[]).await.unwrap_err();
    assert_eq!(empty.code.as_deref(), Some("EmptyBatchRequest"));
    let eleven: Vec<String> = (0..11).map(|i| format!("h{i}")).collect();
    let over = q.delete_batch(&eleven).await.unwrap_err();
    assert_eq!(over.code.as_deref(), Some("TooManyEntriesInBatchRequest"));
    assert!(!over.is_retryable());
    let calls = q.calls();
    assert_eq!((calls.delete_batch, calls.change_visibility_batch), (3, 1));
}
