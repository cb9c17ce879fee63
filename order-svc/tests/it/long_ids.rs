//! Orders the original system keyed by ids longer than WeChat's 32 characters (`tb_order.id`
//! is `varchar(200)`): ListPendingOrders walks past them page by page. A page that ends on such
//! an order hands out a token carrying its id, and the next call must take that token back, or
//! reconciliation never gets past that page. On every backend.

use order_svc::db::entities::order;
use order_svc::domain::now_utc;
use order_svc::testing::Backend;
use paynotify::proto::order::v1 as pb;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::Harness;

on_each_backend!(pending_orders_with_long_ids_are_walked_a_page_at_a_time);

/// An unpaid order as the original system writes it, with the id it chose.
async fn insert_unpaid(
    h: &Harness,
    id: &str,
    create_time: chrono::NaiveDateTime,
) -> anyhow::Result<()> {
    order::Entity::insert(order::ActiveModel {
        id: Set(id.to_owned()),
        total_num: Set(Some(1)),
        total_money: Set(Some(100)),
        pay_money: Set(Some(100)),
        create_time: Set(Some(create_time)),
        update_time: Set(Some(create_time)),
        username: Set(Some("legacy".into())),
        order_status: Set(Some("0".into())),
        pay_status: Set(Some("0".into())),
        is_delete: Set(Some("0".into())),
        ..Default::default()
    })
    .exec_without_returning(&h.db)
    .await?;
    Ok(())
}

async fn pending_orders_with_long_ids_are_walked_a_page_at_a_time(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let now = now_utc();
    // Five UUID-keyed orders a second apart, and two at the widest the column holds: every
    // page of two ends on an id longer than 32 characters.
    let mut expected = Vec::new();
    for n in 0..5_i64 {
        let id = format!("3f2b8c1e-9d4a-4e6b-8a7c-{n:012}");
        insert_unpaid(&h, &id, now - chrono::Duration::seconds(60 - n)).await?;
        expected.push(id);
    }
    for fill in ['a', 'b'] {
        let id = fill.to_string().repeat(200);
        insert_unpaid(&h, &id, now - chrono::Duration::seconds(30)).await?;
        expected.push(id);
    }

    let mut client = h.client.clone();
    let mut walked = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        assert!(page < 10, "the walk never ends: {walked:?}");
        let response = client
            .list_pending_orders(pb::ListPendingOrdersRequest {
                limit: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(response.orders.len() <= 2);
        walked.extend(response.orders.into_iter().map(|o| o.id));
        token = response.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(walked, expected);
    Ok(())
}
