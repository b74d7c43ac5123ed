//! Publishing with publisher confirms: a publish succeeds only once the broker
//! has taken responsibility for the message.

use crate::headers::StringHeaders;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::future::Future;
use std::task::Poll;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
}

/// One message ready to go out.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub message_type: String,
    pub payload: Vec<u8>,
    pub headers: FieldTable,
    /// Unroutable messages count as failures (used for jobs).
    pub mandatory: bool,
}

impl OutgoingMessage {
    pub fn properties(&self) -> BasicProperties {
        BasicProperties::default()
            .with_message_id(self.message_id.clone().into())
            .with_type(self.message_type.clone().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(self.headers.clone())
    }
}

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends without waiting; await the returned confirm.
    pub async fn send(&self, message: &OutgoingMessage) -> Result<PendingConfirm, PublishError> {
        let confirm = self
            .channel
            .basic_publish(
                &message.exchange,
                &message.routing_key,
                BasicPublishOptions {
                    mandatory: message.mandatory,
                    ..BasicPublishOptions::default()
                },
                &message.payload,
                message.properties(),
            )
            .await?;
        Ok(PendingConfirm {
            confirm,
            routing_key: message.routing_key.clone(),
        })
    }

    /// Sends `messages` in order without waiting for each to be written
    /// out: lapin resolves a send only once its I/O thread wrote the
    /// frames, so one send at a time costs a thread round trip per message.
    /// Await the returned confirms.
    pub async fn send_all(
        &self,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<PendingConfirm, PublishError>> {
        let mut sends: Vec<_> = messages
            .iter()
            .map(|message| (Box::pin(self.send(message)), None))
            .collect();
        // The first poll of a send queues its frames; polling them in order
        // keeps the messages in order on the wire.
        std::future::poll_fn(|cx| {
            for (send, sent) in &mut sends {
                if let Poll::Ready(result) = send.as_mut().poll(cx) {
                    *sent = Some(result);
                }
            }
            Poll::Ready(())
        })
        .await;
        let mut confirms = Vec::with_capacity(sends.len());
        for (send, sent) in sends {
            confirms.push(match sent {
                Some(result) => result,
                None => send.await,
            });
        }
        confirms
    }

    /// Sends and waits for the broker's confirm.
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), PublishError> {
        self.send(message).await?.wait().await
    }

    /// Publishes JSON with trace context from the current span.
    pub async fn publish_json(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        message_type: &str,
        payload: &serde_json::Value,
    ) -> Result<(), PublishError> {
        self.publish(&OutgoingMessage {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            message_id: message_id.to_string(),
            message_type: message_type.to_string(),
            payload: payload.to_string().into_bytes(),
            headers: StringHeaders::current_trace().into_table(),
            mandatory: false,
        })
        .await
    }
}

pub struct PendingConfirm {
    confirm: PublisherConfirm,
    routing_key: String,
}

impl PendingConfirm {
    pub async fn wait(self) -> Result<(), PublishError> {
        match self.confirm.await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable(self.routing_key)),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
        }
    }
}
