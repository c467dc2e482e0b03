//! The six templates every tenant starts with: the original module's defaults, with its names,
//! categories and variables, in text that fits one GSM-7 segment with ordinary values.
//!
//! They are created for a tenant made through the admin API right after it is stored, and for
//! the built-in `default` tenant at every start-up. Seeding is idempotent: each default's id is
//! derived from the tenant and the name, so a second run finds its ids taken and creates
//! nothing, and a default the tenant deleted (its row stays) is not created again. A tenant
//! that already has a template of one of these names keeps its own.
//!
//! The variables are listed here rather than asked of the renderer, since a tenant's renderer
//! may not be loaded when the tenant is created; a test renders each default through the
//! bundled mustache plugin to keep the lists true.

use sha2::{Digest, Sha256};

use super::super::Pipeline;
use crate::domain::{Category, TenantId};
use crate::store::{self, NewTemplate};

/// One default template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultTemplate {
    /// The name, as the original module's `get_template_id(name)` used it.
    pub name: &'static str,
    /// The category of the messages sent from it.
    pub category: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// The mustache source.
    pub body: &'static str,
    /// The variables it uses, in first-use order.
    pub variables: &'static [&'static str],
}

/// The six defaults.
pub const DEFAULT_TEMPLATES: [DefaultTemplate; 6] = [
    DefaultTemplate {
        name: "reservation_confirmation",
        category: "reservation",
        description: "Confirms a table reservation",
        body: "Hi {{customer_name}}, your table for {{party_size}} at {{restaurant_name}} is \
               confirmed for {{date}} at {{time}}. Confirmation code: {{confirmation_code}}",
        variables: &[
            "customer_name",
            "party_size",
            "restaurant_name",
            "date",
            "time",
            "confirmation_code",
        ],
    },
    DefaultTemplate {
        name: "reservation_reminder",
        category: "reminder",
        description: "Reminds a guest of today's reservation",
        body: "Reminder: your table for {{party_size}} at {{restaurant_name}} is booked for \
               today at {{time}}. See you soon!",
        variables: &["party_size", "restaurant_name", "time"],
    },
    DefaultTemplate {
        name: "order_ready",
        category: "order",
        description: "Tells a customer their order is ready for pickup",
        body: "Hi {{customer_name}}, your order #{{order_number}} is ready for pickup at \
               {{restaurant_name}}!",
        variables: &["customer_name", "order_number", "restaurant_name"],
    },
    DefaultTemplate {
        name: "order_delivered",
        category: "order",
        description: "Tells a customer their order was delivered",
        body: "Your order #{{order_number}} from {{restaurant_name}} has been delivered. \
               Enjoy your meal!",
        variables: &["order_number", "restaurant_name"],
    },
    DefaultTemplate {
        name: "authentication_code",
        category: "authentication",
        description: "Sends a one-time verification code",
        body: "{{code}} is your {{restaurant_name}} verification code. Do not share it with \
               anyone.",
        variables: &["code", "restaurant_name"],
    },
    DefaultTemplate {
        name: "marketing_promotion",
        category: "marketing",
        description: "Announces a promotion with a promo code",
        body: "{{restaurant_name}}: {{promotion_text}} Use code {{promo_code}} for {{discount}}% \
               off. Reply STOP to opt out",
        variables: &[
            "restaurant_name",
            "promotion_text",
            "promo_code",
            "discount",
        ],
    },
];

/// Creates the defaults `tenant` does not have yet (see the module documentation); returns how
/// many it created.
pub async fn seed(pipeline: &Pipeline, tenant: &TenantId) -> store::Result<u32> {
    let now = pipeline.now();
    let templates: Vec<NewTemplate> = DEFAULT_TEMPLATES
        .iter()
        .map(|default| NewTemplate {
            id: default_id(tenant, default.name),
            tenant_id: tenant.clone(),
            name: default.name.to_owned(),
            category: Category::for_message(default.category).ok(),
            description: Some(default.description.to_owned()),
            body: default.body.to_owned(),
            variables: default.variables.iter().map(|v| (*v).to_owned()).collect(),
            is_active: true,
            now,
        })
        .collect();
    pipeline.store().seed_templates(&templates).await
}

/// The id of `tenant`'s default template `name`: `tpl_` and 26 base-32 characters of a hash of
/// both, shaped like every other template id and the same at every start.
fn default_id(tenant: &TenantId, name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let digest = Sha256::new()
        .chain_update(tenant.as_str())
        .chain_update([0])
        .chain_update(name)
        .finalize();
    let mut id = String::from("tpl_");
    id.extend(
        digest
            .iter()
            .take(26)
            .map(|byte| char::from(ALPHABET[usize::from(byte & 0x1f)])),
    );
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::{Encoding, Options, count};

    /// Every default is valid as a message category, ends its marketing text with the opt-out
    /// wording, and fits one GSM-7 segment with ordinary values.
    #[test]
    fn defaults_fit_one_gsm_segment() {
        let ordinary = |name: &str| match name {
            "customer_name" => "Maria Garcia",
            "restaurant_name" => "AuraConnect Bistro",
            "promotion_text" => "Two-for-one pizzas every Tuesday!",
            "confirmation_code" | "promo_code" => "ABC123",
            "date" => "June 14, 2025",
            "time" => "07:30 PM",
            "order_number" => "ORD-12345",
            "code" => "482913",
            "party_size" | "discount" => "20",
            _ => "x",
        };
        for default in DEFAULT_TEMPLATES {
            assert!(Category::for_message(default.category).is_ok());
            let mut text = default.body.to_owned();
            for variable in default.variables {
                assert!(text.contains(&format!("{{{{{variable}}}}}")), "{variable}");
                text = text.replace(&format!("{{{{{variable}}}}}"), ordinary(variable));
            }
            assert!(!text.contains("{{"), "{}", default.name);
            let counted = count(&text, Options::default()).unwrap();
            assert_eq!(counted.encoding, Encoding::Gsm7, "{}", default.name);
            assert_eq!(counted.segments, 1, "{}: {text}", default.name);
        }
        let marketing = DEFAULT_TEMPLATES.iter().find(|d| d.category == "marketing");
        assert!(marketing.unwrap().body.ends_with("Reply STOP to opt out"));
    }

    /// A default's id depends on the tenant and the name, and looks like any template id.
    #[test]
    fn ids_are_derived() {
        let a = TenantId::default_tenant();
        let id = default_id(&a, "order_ready");
        assert_eq!(id, default_id(&a, "order_ready"));
        assert_eq!(id.len(), 30);
        assert_ne!(id, default_id(&a, "order_delivered"));
        let b = TenantId::new("ten_other".to_owned()).unwrap();
        assert_ne!(id, default_id(&b, "order_ready"));
    }
}
