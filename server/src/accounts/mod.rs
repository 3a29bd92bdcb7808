//! The account side of the TMS: merchants, orders, locations, users, groups,
//! sessions, API tokens and two-step verification.
//!
//! Functions here take a connection and do the whole change (validation,
//! authorisation, persistence, audit) so that handlers stay thin and every
//! change is one transaction.

pub mod access;
pub mod groups;
pub mod merchants;
pub mod rows;
pub mod throttle;
pub mod users;

/// An e-mail to send once the change that prompted it has committed.
#[derive(Debug, Clone)]
pub struct PendingMail(pub crate::mail::Mail);

/// The text of an account activation or invitation e-mail.
pub fn activation_mail(
    public_url: &str,
    to: &str,
    token: &str,
    company: Option<&str>,
    ttl_hours: u64,
) -> PendingMail {
    let link = format!("{public_url}/activate?token={token}");
    let (subject, opening) = match company {
        Some(company) => (
            format!("Activate your {company} account"),
            format!(
                "Your account for {company} has been created with the first order of your payment terminals."
            ),
        ),
        None => (
            "You have been invited to the TMS".to_owned(),
            "You have been given an account on the TMS.".to_owned(),
        ),
    };
    let days = ttl_hours / 24;
    let validity = if days >= 1 && ttl_hours.is_multiple_of(24) {
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else {
        format!("{ttl_hours} hours")
    };
    PendingMail(crate::mail::Mail {
        to: to.to_owned(),
        subject,
        body: format!(
            "Hello,\n\n{opening}\n\nChoose your password here to activate it:\n\n{link}\n\n\
             The link works once and expires in {validity}. If it has expired, ask your\n\
             administrator or our support for a new one.\n"
        ),
    })
}

/// The "forgotten password" e-mail, in French and English (the address
/// may belong to either kind of reader, and nobody is signed in to ask).
pub fn password_reset_mail(public_url: &str, to: &str, token: &str, ttl_hours: u64) -> PendingMail {
    let link = format!("{public_url}/activate?token={token}");
    PendingMail(crate::mail::Mail {
        to: to.to_owned(),
        subject: "Nouveau mot de passe / New password".to_owned(),
        body: format!(
            "Bonjour,\n\nPour choisir un nouveau mot de passe, ouvrez ce lien :\n\n{link}\n\n\
             Le lien fonctionne une fois et expire dans {ttl_hours} h. Si vous n'avez rien demandé,\n\
             ignorez ce message : votre mot de passe ne change pas.\n\n---\n\n\
             Hello,\n\nTo choose a new password, open this link:\n\n{link}\n\n\
             The link works once and expires in {ttl_hours} hour(s). If you did not ask for it,\n\
             ignore this message: your password stays as it is.\n"
        ),
    })
}

/// The audit trail the caller may read: a merchant's admins their own
/// merchant's (another merchant's is empty, not an error, so its existence
/// is not revealed), operator admins and support anyone's.
pub fn audit_trail(
    conn: &mut crate::db::DbConnection,
    actor: &access::Actor,
    mut filter: crate::db::audit::AuditFilter,
) -> Result<Vec<crate::db::audit::AuditEvent>, crate::error::Error> {
    match actor.merchant_id() {
        Some(own) => {
            if filter.merchant_id.is_some_and(|m| m != own) {
                return Ok(Vec::new());
            }
            if !actor.is_admin_of(own) {
                return Err(crate::error::Error::forbidden("only admins read the audit trail"));
            }
            filter.merchant_id = Some(own);
        }
        None => {
            actor.require_operator(&[
                tms_packages::accounts::OperatorRole::OperatorAdmin,
                tms_packages::accounts::OperatorRole::Support,
            ])?;
        }
    }
    Ok(crate::db::audit::list(conn, &filter)?)
}
