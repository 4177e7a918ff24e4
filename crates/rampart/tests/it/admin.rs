//! Administration over the API: invitations by role, the role table, last-owner protection,
//! disabling and ending sessions, the audit trail.

use serde_json::{json, Value};

use crate::support::{expect_error, Server, User};

async fn patch_user(server: &Server, actor: &User, target: &str, body: Value) -> reqwest::Response {
    server
        .client()
        .patch(server.url(&format!("/api/v1/admin/users/{target}")))
        .headers(actor.bearer())
        .json(&body)
        .send()
        .await
        .expect("patch")
}

async fn invite_as(server: &Server, actor: &User, role: &str) -> reqwest::Response {
    server
        .client()
        .post(server.url("/api/v1/admin/invitations"))
        .headers(actor.bearer())
        .json(&json!({ "role": role, "expires_in_hours": 2 }))
        .send()
        .await
        .expect("invite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_invite_whom() {
    let server = Server::start();
    let owner = server.user("owner").await;
    let admin = server.user("admin").await;
    let member = server.user("member").await;
    let guest = server.user("guest").await;
    // (actor, invited role, allowed)
    let table = [
        (&owner, "owner", true),
        (&owner, "admin", true),
        (&owner, "member", true),
        (&admin, "admin", false),
        (&admin, "owner", false),
        (&admin, "member", true),
        (&admin, "guest", true),
        (&member, "member", false),
        (&guest, "guest", false),
    ];
    for (actor, role, allowed) in table {
        let response = invite_as(&server, actor, role).await;
        if allowed {
            assert_eq!(response.status(), 201, "{} inviting {role}", actor.username);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["token"].as_str().map(str::len), Some(43));
            assert!(body["expires_at"].as_str().is_some());
            // The invitation works, and grants exactly the role.
            let user = server.enroll_with(body["token"].as_str().expect("token"), role).await;
            let me: Value = server
                .client()
                .get(server.url("/api/v1/users/me"))
                .headers(user.bearer())
                .send()
                .await
                .expect("me")
                .json()
                .await
                .expect("json");
            assert_eq!(me["role"], role);
        } else {
            expect_error(response, 403, "forbidden").await;
        }
    }
    let bad_role = invite_as(&server, &owner, "root").await;
    expect_error(bad_role, 400, "invalid_input").await;
    let too_long = server
        .client()
        .post(server.url("/api/v1/admin/invitations"))
        .headers(owner.bearer())
        .json(&json!({ "role": "member", "expires_in_hours": 100000 }))
        .send()
        .await
        .expect("invite");
    expect_error(too_long, 400, "invalid_input").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_follow_the_table_and_keep_the_last_owner() {
    let server = Server::start();
    let owner = server.user("owner").await;
    let admin = server.user("admin").await;
    let member = server.user("member").await;
    let other = server.user("member").await;

    // Members cannot administer at all.
    expect_error(patch_user(&server, &member, &other.id, json!({ "role": "guest" })).await, 403, "forbidden").await;
    let list =
        server.client().get(server.url("/api/v1/admin/users")).headers(member.bearer()).send().await.expect("list");
    expect_error(list, 403, "forbidden").await;
    // Nobody raises their own role.
    expect_error(patch_user(&server, &member, &member.id, json!({ "role": "admin" })).await, 403, "forbidden").await;
    expect_error(patch_user(&server, &admin, &admin.id, json!({ "role": "owner" })).await, 403, "forbidden").await;
    // Admins manage members and guests, not admins.
    assert_eq!(patch_user(&server, &admin, &other.id, json!({ "role": "guest" })).await.status(), 200);
    expect_error(patch_user(&server, &admin, &other.id, json!({ "role": "admin" })).await, 403, "forbidden").await;
    // Only an owner makes or unmakes admins; the change takes effect on the next request.
    let promoted = patch_user(&server, &owner, &member.id, json!({ "role": "admin" })).await;
    assert_eq!(promoted.status(), 200);
    let body: Value = promoted.json().await.expect("json");
    assert_eq!(body["role"], "admin");
    let list =
        server.client().get(server.url("/api/v1/admin/users")).headers(member.bearer()).send().await.expect("list");
    assert_eq!(list.status(), 200);
    let users: Vec<Value> = list.json().await.expect("json");
    assert!(users.iter().all(|u| u.get("password_hash").is_none()));
    for key in ["id", "username", "display_name", "role", "disabled", "mfa_enabled", "last_login_at"] {
        assert!(users[0].get(key).is_some(), "user lacks {key}");
    }
    assert_eq!(patch_user(&server, &owner, &member.id, json!({ "role": "member" })).await.status(), 200);
    // The demotion takes effect on the very next request.
    let list =
        server.client().get(server.url("/api/v1/admin/users")).headers(member.bearer()).send().await.expect("list");
    expect_error(list, 403, "forbidden").await;
    // The last owner can be neither demoted nor disabled, even by themselves.
    expect_error(patch_user(&server, &owner, &owner.id, json!({ "role": "admin" })).await, 403, "last_owner").await;
    expect_error(patch_user(&server, &owner, &owner.id, json!({ "disabled": true })).await, 403, "last_owner").await;
    // With a second owner, the first may step down.
    let second = server.user("owner").await;
    assert_eq!(patch_user(&server, &second, &owner.id, json!({ "role": "admin" })).await.status(), 200);
    expect_error(patch_user(&server, &second, &second.id, json!({ "role": "member" })).await, 403, "last_owner").await;
    // Unknown and malformed ids are "not found"; an empty patch is invalid.
    expect_error(
        patch_user(&server, &second, "00000000-0000-4000-8000-000000000000", json!({ "role": "guest" })).await,
        404,
        "not_found",
    )
    .await;
    expect_error(patch_user(&server, &second, "../../etc", json!({ "role": "guest" })).await, 404, "not_found").await;
    expect_error(patch_user(&server, &second, &other.id, json!({})).await, 400, "invalid_input").await;
    expect_error(
        patch_user(&server, &second, &other.id, json!({ "role": "member", "admin": true })).await,
        400,
        "unknown_field",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_their_sessions_and_blocks_login() {
    let server = Server::start();
    let admin = server.user("admin").await;
    let member = server.user("member").await;
    let me = || server.client().get(server.url("/api/v1/users/me")).headers(member.bearer()).send();
    assert_eq!(me().await.expect("me").status(), 200);
    assert_eq!(patch_user(&server, &admin, &member.id, json!({ "disabled": true })).await.status(), 200);
    expect_error(me().await.expect("me"), 401, "unauthenticated").await;
    let login = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "username": member.username, "password": crate::support::PASSWORD }))
        .send()
        .await
        .expect("login");
    expect_error(login, 401, "invalid_credentials").await;
    // Enabled again, they can sign in; then an admin ends their sessions without disabling.
    assert_eq!(patch_user(&server, &admin, &member.id, json!({ "disabled": false })).await.status(), 200);
    let token = server.login_token(&member.username, crate::support::PASSWORD).await;
    let end = server
        .client()
        .delete(server.url(&format!("/api/v1/admin/users/{}/sessions", member.id)))
        .headers(admin.bearer())
        .send()
        .await
        .expect("end sessions");
    assert_eq!(end.status(), 204);
    let after = server
        .client()
        .get(server.url("/api/v1/users/me"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("me");
    expect_error(after, 401, "unauthenticated").await;
    // Admins cannot disable admins or end an owner's sessions.
    let other_admin = server.user("admin").await;
    expect_error(patch_user(&server, &admin, &other_admin.id, json!({ "disabled": true })).await, 403, "forbidden")
        .await;

    let audit: Vec<Value> = server
        .client()
        .get(server.url("/api/v1/admin/audit?limit=1000"))
        .headers(admin.bearer())
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    for action in
        ["admin.user.disabled", "admin.user.enabled", "admin.user.sessions_revoked", "auth.login", "auth.enroll"]
    {
        assert!(audit.iter().any(|r| r["action"] == action), "no audit record for {action}");
    }
    let denied =
        audit.iter().find(|r| r["action"] == "admin.user.update" && r["outcome"] == "denied").expect("denied record");
    assert_eq!(denied["actor"], admin.id.as_str());
    assert!(audit.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
}

/// Issue 16 item 17: the OpenAPI document forbids `null` for `role` and `disabled` and an empty
/// patch, so the server refuses both with a JSON 400 (`"role": null` used to be accepted as "no
/// change").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_patch_with_null_or_nothing_is_refused() {
    let server = Server::start();
    let owner = server.user("owner").await;
    let member = server.user("member").await;
    for body in
        [json!({ "role": null }), json!({ "disabled": null }), json!({ "role": null, "disabled": false }), json!({})]
    {
        let response = patch_user(&server, &owner, &member.id, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json error");
        assert!(error["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{body}: {error}");
    }
    let still: Value =
        patch_user(&server, &owner, &member.id, json!({ "disabled": false })).await.json().await.expect("json");
    assert_eq!(still["role"], "member", "nothing changed the role");
}
