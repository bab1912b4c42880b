//! Service-account tokens checked by the API server (a TokenReview), for the CA on the push
//! channel: istiod's `KubeJWTAuthenticator` (security/pkg/server/ca/authenticate/kubeauth),
//! whose check is security/pkg/k8s/tokenreview/k8sauthn.go (`ValidateK8sJwt`,
//! `getTokenReviewResult`): no error, authenticated, in the `system:serviceaccounts` group,
//! and a username `system:serviceaccount:<namespace>:<name>`, which names the identity.
//! The audience asked for is istiod's default, `istio-ca`.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};

use super::{client, KubeSourceConfig, KubeSourceError};
use crate::plane::net::issuer::{Review, TokenReviewer};

/// The audience a projected token for the CA carries (Istio's `istio-ca`).
pub const AUDIENCE: &str = "istio-ca";

/// Reviews tokens with the API server the Kubernetes source reads.
pub struct KubeTokenReviewer {
    client: kube::Client,
}

impl KubeTokenReviewer {
    /// A client as the source makes one (call inside the runtime that will run the reviews).
    pub async fn connect(config: &KubeSourceConfig) -> Result<Self, KubeSourceError> {
        Ok(KubeTokenReviewer {
            client: client(config).await?,
        })
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review(&self, token: String) -> Review {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token),
                    audiences: Some(vec![AUDIENCE.to_string()]),
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("the TokenReview failed: {e}"))?;
            service_account_of(answer.status.as_ref())
        })
    }
}

/// The namespace and service account a review's status authenticates (Istio's
/// `getTokenReviewResult`).
pub fn service_account_of(status: Option<&TokenReviewStatus>) -> Result<(String, String), String> {
    let status = status.ok_or("the TokenReview has no status")?;
    if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
        return Err(format!(
            "the service account authentication returns an error: {error}"
        ));
    }
    if status.authenticated != Some(true) {
        return Err("the token is not authenticated".into());
    }
    let user = status
        .user
        .as_ref()
        .ok_or("the TokenReview names no user")?;
    let groups = user.groups.as_deref().unwrap_or_default();
    if !groups.iter().any(|g| g == "system:serviceaccounts") {
        return Err("the token is not a service account".into());
    }
    let username = user.username.as_deref().unwrap_or_default();
    match username.split(':').collect::<Vec<_>>()[..] {
        ["system", "serviceaccount", namespace, name] => {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "invalid username {username:?} in the token review result"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn status(authenticated: bool, username: &str, groups: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            user: Some(UserInfo {
                username: Some(username.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..UserInfo::default()
            }),
            ..TokenReviewStatus::default()
        }
    }

    /// The cases of Istio's k8sauthn_test.go (`TestGetTokenReviewResult`).
    #[test]
    fn istio_reads_a_review_as_this_does() {
        let sa = status(
            true,
            "system:serviceaccount:default:example-pod-sa",
            &["system:serviceaccounts", "system:authenticated"],
        );
        assert_eq!(
            service_account_of(Some(&sa)),
            Ok(("default".into(), "example-pod-sa".into()))
        );
        let refused = status(
            false,
            "system:serviceaccount:default:sa",
            &["system:serviceaccounts"],
        );
        assert_eq!(
            service_account_of(Some(&refused)),
            Err("the token is not authenticated".into())
        );
        let user = status(true, "alice", &["system:authenticated"]);
        assert_eq!(
            service_account_of(Some(&user)),
            Err("the token is not a service account".into())
        );
        let odd = status(
            true,
            "system:serviceaccount:default",
            &["system:serviceaccounts"],
        );
        assert!(service_account_of(Some(&odd)).is_err());
        let error = TokenReviewStatus {
            error: Some("token expired".into()),
            ..sa
        };
        assert!(service_account_of(Some(&error))
            .unwrap_err()
            .contains("token expired"));
        assert!(service_account_of(None).is_err());
    }
}
