//! One ACME order (RFC 8555 §7.4): the account, the validations, the CSR, the chain.

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::time::Duration;

use super::challenge::{Answer, Challenges};
use super::storage::{Disk, Pem, Shared};
use super::{AcmeError, AcmeSettings, ChallengeKind};

/// How long the CA gets to validate, and then to issue.
const CA_PATIENCE: Duration = Duration::from_secs(90);

/// How long the ordering node waits after publishing an answer before telling the CA to
/// validate: the other nodes copy answers every second.
const SHARE_DELAY: Duration = Duration::from_secs(2);

/// The ACME account: the stored one (shared store first), else a new one, stored.
pub(super) async fn account(
    settings: &AcmeSettings,
    disk: &Disk,
    shared: Option<&Shared>,
) -> Result<Account, AcmeError> {
    let directory = &settings.directory;
    let builder = match &settings.directory_ca {
        Some(pem) => Account::builder_with_root(pem),
        None => Account::builder(),
    }
    .map_err(|e| AcmeError::Client(e.to_string()))?;
    let stored = match shared {
        Some(shared) => shared.load_account(directory).await?,
        None => None,
    };
    let stored = match stored {
        Some(json) => Some(json),
        None => disk.load_account(directory)?,
    };
    if let Some(json) = stored {
        let credentials: AccountCredentials =
            serde_json::from_str(&json).map_err(|e| AcmeError::Client(e.to_string()))?;
        return builder
            .from_credentials(credentials)
            .await
            .map_err(|e| unreachable_directory(directory, e));
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .map_err(|e| unreachable_directory(directory, e))?;
    let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Client(e.to_string()))?;
    disk.save_account(directory, &json)?;
    if let Some(shared) = shared {
        shared.save_account(directory, &json).await?;
    }
    tracing::info!("ACME: account created at {directory}");
    Ok(account)
}

fn unreachable_directory(directory: &str, e: instant_acme::Error) -> AcmeError {
    AcmeError::Directory {
        url: directory.to_string(),
        reason: e.to_string(),
    }
}

/// Orders a certificate for the settings' domains, answering each validation through
/// `challenges` (and `shared`, for the other nodes).
pub(super) async fn order(
    account: &Account,
    settings: &AcmeSettings,
    challenges: &Challenges,
    shared: Option<&Shared>,
) -> Result<Pem, AcmeError> {
    let failed = |e: instant_acme::Error| AcmeError::Order(e.to_string());
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(failed)?;
    let kind = match settings.challenge {
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(failed)?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => return Err(AcmeError::Order(format!("an authorization is {status:?}"))),
        }
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| AcmeError::Order(format!("the CA offers no {kind:?} challenge")))?;
        let key_authorization = challenge.key_authorization();
        let answer = match settings.challenge {
            ChallengeKind::TlsAlpn01 => Answer::Alpn {
                domain: challenge.identifier().to_string(),
                digest: key_authorization.digest().as_ref().to_vec(),
            },
            ChallengeKind::Http01 => Answer::Http {
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_string(),
            },
        };
        challenges.add(&answer)?;
        if let Some(shared) = shared {
            shared.publish(&answer).await?;
            tokio::time::sleep(SHARE_DELAY).await;
        }
        challenge.set_ready().await.map_err(failed)?;
    }
    let patience = RetryPolicy::new().timeout(CA_PATIENCE);
    let status = order.poll_ready(&patience).await.map_err(failed)?;
    if status != OrderStatus::Ready {
        let problem = order
            .state()
            .error
            .as_ref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default();
        return Err(AcmeError::Order(format!(
            "the order is {status:?}{problem}"
        )));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(settings.domains.clone())
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    order.finalize_csr(csr.der()).await.map_err(failed)?;
    let chain = order.poll_certificate(&patience).await.map_err(failed)?;
    Ok(Pem {
        chain,
        key: key.serialize_pem(),
    })
}
