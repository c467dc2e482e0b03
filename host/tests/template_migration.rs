//! Migration 0007 on a database that already holds templates, on SQLite and on PostgreSQL: each
//! existing template becomes version 1 of itself, and seeding the defaults leaves a template
//! that already has a default's name alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use herald::TenantId;
use herald::store::{NewTemplate, Store, StoreOptions};
use sqlx::migrate::Migrator;

/// A copy of `migrations/<backend>` up to 0006, the schema before template versions.
fn migrations_before_0007(backend: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = common::root().join("migrations").join(backend);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    dir
}

const OLD_TEMPLATE: &str = "INSERT INTO templates (id, tenant_id, name, category, description,
        body, variables, is_active, created_at, updated_at)
    VALUES ('tpl_old', 'default', 'order_ready', 'order', 'ours', 'Old {{x}}', '[\"x\"]', TRUE,
        1000, 2000)";

/// Checks the migrated store: the old template is version 1 with one version, and seeding a
/// default of the same name creates nothing.
async fn check(store: Store) {
    let tenant = TenantId::default_tenant();
    let template = store
        .get_template(&tenant, "tpl_old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((template.version, template.deleted_at), (1, None));
    assert_eq!(template.body, "Old {{x}}");
    let versions = store
        .template_versions(&tenant, "tpl_old", None, None)
        .await
        .unwrap()
        .items;
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (versions[0].version, versions[0].body.as_str()),
        (1, "Old {{x}}")
    );
    let default = NewTemplate {
        id: "tpl_seeded".into(),
        tenant_id: tenant.clone(),
        name: "order_ready".into(),
        category: None,
        description: None,
        body: "New {{y}}".into(),
        variables: vec!["y".into()],
        is_active: true,
        now: 3000,
    };
    assert_eq!(
        store
            .seed_templates(std::slice::from_ref(&default))
            .await
            .unwrap(),
        0
    );
    let found = store
        .find_template(&tenant, "order_ready")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "tpl_old");
    store.close().await;
}

/// SQLite: 0007 rebuilds the templates table and keeps every row.
#[tokio::test]
async fn sqlite_keeps_existing_templates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let migrations = migrations_before_0007("sqlite");
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        Migrator::new(migrations.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(OLD_TEMPLATE).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check(store).await;
}

/// PostgreSQL: 0007 drops the name constraint for a partial index and keeps every row.
#[tokio::test]
async fn postgres_keeps_existing_templates() {
    let url = common::db::postgres_url().await;
    let migrations = migrations_before_0007("postgres");
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        Migrator::new(migrations.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(OLD_TEMPLATE).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    check(store).await;
}
