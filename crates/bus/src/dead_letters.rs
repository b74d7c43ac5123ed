//! Operating `<queue>.dead`: list parked messages with their reasons, and
//! send them back to their queue.

use crate::broker::Broker;
use crate::headers::{self, StringHeaders};
use crate::publisher::{OutgoingMessage, Publisher};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;

/// One parked message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message_id: String,
    pub message_type: String,
    pub error: String,
    pub failed_at: String,
    pub attempts: u32,
    pub body: String,
}

fn describe(delivery: &lapin::message::Delivery) -> DeadLetter {
    let properties = &delivery.properties;
    let table = properties.headers().as_ref();
    let strings = StringHeaders::from_table(table);
    DeadLetter {
        message_id: properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        message_type: properties
            .kind()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        error: strings.0.get(headers::ERROR).cloned().unwrap_or_default(),
        failed_at: strings
            .0
            .get(headers::FAILED_AT)
            .cloned()
            .unwrap_or_default(),
        attempts: headers::attempt(table),
        body: String::from_utf8_lossy(&delivery.data).into_owned(),
    }
}

/// Declares `<queue>.dead` as its consumer does (durable, no arguments),
/// so asking after a queue whose consumer never ran finds it empty rather
/// than failing (and making the broker close the channel).
async fn declare_dead(channel: &lapin::Channel, dead: &str) -> lapin::Result<()> {
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(dead, durable, lapin::types::FieldTable::default())
        .await
        .map(|_| ())
}

/// Reads every message parked for `queue` without removing any: each is
/// taken unacknowledged and returned when the channel closes.
pub async fn list(broker: &Broker, queue: &str) -> lapin::Result<Vec<DeadLetter>> {
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    let dead = broker.names.dead_queue(queue);
    declare_dead(&channel, &dead).await?;
    let mut letters = Vec::new();
    while let Some(message) = channel
        .basic_get(&dead, BasicGetOptions { no_ack: false })
        .await?
    {
        letters.push(describe(&message.delivery));
    }
    channel.close(200, "listed").await?;
    crate::broker::close(connection, "listed").await;
    Ok(letters)
}

/// Sends parked messages back to `queue` for a fresh round of attempts:
/// those with message id `only` when given, else all. Returns how many.
pub async fn requeue(broker: &Broker, queue: &str, only: Option<&str>) -> lapin::Result<usize> {
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    let publisher = Publisher::open(&connection).await?;
    let dead = broker.names.dead_queue(queue);
    let target = broker.names.physical(queue);
    declare_dead(&channel, &dead).await?;
    let mut moved = 0;
    let mut kept = Vec::new();
    while let Some(message) = channel
        .basic_get(&dead, BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = message.delivery;
        let letter = describe(&delivery);
        if only.is_some_and(|id| id != letter.message_id) {
            kept.push(delivery);
            continue;
        }
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        let mut fresh = lapin::types::FieldTable::default();
        for (key, value) in table.inner() {
            if !key.as_str().starts_with("x-") {
                fresh.insert(key.clone(), value.clone());
            }
        }
        fresh.insert(headers::ATTEMPT.into(), AMQPValue::LongLongInt(1));
        fresh.insert(
            headers::REQUEUED.into(),
            AMQPValue::LongString(lapin::types::LongString::from("true")),
        );
        table = fresh;
        let published = publisher
            .publish(&OutgoingMessage {
                exchange: String::new(),
                routing_key: target.clone(),
                message_id: letter.message_id.clone(),
                message_type: letter.message_type.clone(),
                payload: delivery.data.clone(),
                headers: table,
                mandatory: true,
            })
            .await;
        match published {
            Ok(()) => {
                delivery.ack(BasicAckOptions::default()).await?;
                moved += 1;
            }
            Err(err) => {
                tracing::warn!(error = %err, message_id = %letter.message_id, "could not requeue");
                kept.push(delivery);
            }
        }
    }
    for delivery in kept {
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
    }
    channel.close(200, "requeued").await?;
    crate::broker::close(connection, "requeued").await;
    Ok(moved)
}
