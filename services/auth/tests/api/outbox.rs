use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn events_wait_out_a_broker_outage_and_arrive_exactly_once() {
    let proxy = testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let app = spawn_app_with(|config| {
        config.common.amqp_url = secrecy::SecretString::from(format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f",
            proxy.port()
        ));
    })
    .await;
    let mut events = app.bus.probe("events", "user.registered").await.unwrap();

    proxy.cut();
    let email = unique_email();
    let user = app.register(&email).await;
    assert!(
        events.next(Duration::from_millis(800)).await.is_none(),
        "nothing can leave during the outage"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL"),
        2
    );

    proxy.restore();
    let event = events
        .next(Duration::from_secs(20))
        .await
        .expect("event after the outage");
    assert_eq!(event.json()["data"]["user_id"], user["user"]["id"]);
    assert!(
        events.next(Duration::from_secs(1)).await.is_none(),
        "published exactly once"
    );
    app.outbox_drained().await;
    assert_eq!(
        app.email_job(&email).await["data"]["template"],
        "verify_email"
    );
}
