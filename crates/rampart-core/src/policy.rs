//! The permission policy: one pure function of (actor, action) that every server-wide permission
//! decision goes through. The `app` layer gathers the facts (the actor's role, the target's role,
//! whether the target is the last owner) and asks; this module only decides. The full table is
//! unit-tested below.

use crate::role::Role;

/// Who is asking: their role, and whether the target (if any) is themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    pub role: Role,
}

/// Facts about the user an administrative action is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetUser {
    pub role: Role,
    pub is_self: bool,
    /// The target is an owner and no other enabled owner exists.
    pub is_last_owner: bool,
}

/// Server-wide actions that need a permission decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Search the user directory.
    SearchDirectory,
    /// Create an invitation that grants `role`.
    CreateInvitation { role: Role },
    /// List every account with its administrative fields.
    ListUsers,
    /// Change a user's role.
    ChangeRole { target: TargetUser, new_role: Role },
    /// Disable (or enable) a user.
    SetDisabled { target: TargetUser, disabled: bool },
    /// End every session of another user.
    RevokeUserSessions { target: TargetUser },
    /// Read or verify the audit log and security events.
    ReadAudit,
}

/// Why an action is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The actor's role does not allow it.
    Forbidden,
    /// It would leave the server without an enabled owner.
    LastOwner,
}

/// Decides whether `actor` may perform `action`. No I/O; the same inputs always give the same
/// answer.
pub fn authorize(actor: Actor, action: Action) -> Result<(), Denied> {
    let allowed = match action {
        Action::SearchDirectory => actor.role >= Role::Member,
        Action::ListUsers | Action::ReadAudit => actor.role.is_administrator(),
        // Only an owner may bring in admins or owners.
        Action::CreateInvitation { role } => may_manage_role(actor.role, role),
        Action::ChangeRole { target, new_role } => {
            if target.is_last_owner && new_role != Role::Owner {
                return Err(Denied::LastOwner);
            }
            may_manage_role(actor.role, target.role) && may_manage_role(actor.role, new_role)
        }
        Action::SetDisabled { target, disabled } => {
            if disabled && target.is_last_owner {
                return Err(Denied::LastOwner);
            }
            // Disabling yourself is refused: it would end the session making the request and is
            // almost always a slip; another administrator can do it.
            !(disabled && target.is_self) && may_manage_role(actor.role, target.role)
        }
        Action::RevokeUserSessions { target } => may_manage_role(actor.role, target.role),
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// Administrators manage members and guests; only owners manage admins and owners.
fn may_manage_role(actor: Role, subject: Role) -> bool {
    match subject {
        Role::Guest | Role::Member => actor.is_administrator(),
        Role::Admin | Role::Owner => actor == Role::Owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Guest, Member, Owner};

    fn target(role: Role) -> TargetUser {
        TargetUser { role, is_self: false, is_last_owner: false }
    }

    fn can(actor: Role, action: Action) -> bool {
        authorize(Actor { role: actor }, action).is_ok()
    }

    #[test]
    fn directory_is_for_members_and_up() {
        let expected = [(Guest, false), (Member, true), (Admin, true), (Owner, true)];
        for (role, allowed) in expected {
            assert_eq!(can(role, Action::SearchDirectory), allowed, "{role}");
        }
    }

    #[test]
    fn user_list_and_audit_are_for_administrators_only() {
        for role in Role::ALL {
            assert_eq!(can(role, Action::ListUsers), role.is_administrator(), "{role}");
            assert_eq!(can(role, Action::ReadAudit), role.is_administrator(), "{role}");
        }
    }

    #[test]
    fn invitation_table() {
        // (actor, invited role, allowed)
        for actor in Role::ALL {
            for invited in Role::ALL {
                let expected = match invited {
                    Guest | Member => actor.is_administrator(),
                    Admin | Owner => actor == Owner,
                };
                assert_eq!(
                    can(actor, Action::CreateInvitation { role: invited }),
                    expected,
                    "{actor} inviting {invited}"
                );
            }
        }
    }

    #[test]
    fn role_change_full_table() {
        for actor in Role::ALL {
            for from in Role::ALL {
                for to in Role::ALL {
                    let action = Action::ChangeRole { target: target(from), new_role: to };
                    let touches_admin = from >= Admin || to >= Admin;
                    let expected = if touches_admin { actor == Owner } else { actor >= Admin };
                    assert_eq!(can(actor, action), expected, "{actor}: {from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn the_last_owner_cannot_be_demoted_or_disabled_even_by_themselves() {
        let last = TargetUser { role: Owner, is_self: true, is_last_owner: true };
        for to in [Guest, Member, Admin] {
            let result = authorize(Actor { role: Owner }, Action::ChangeRole { target: last, new_role: to });
            assert_eq!(result, Err(Denied::LastOwner));
        }
        let other = TargetUser { is_self: false, ..last };
        let result = authorize(Actor { role: Owner }, Action::SetDisabled { target: other, disabled: true });
        assert_eq!(result, Err(Denied::LastOwner));
        // Keeping the last owner an owner is not a change that hurts.
        let same = authorize(Actor { role: Owner }, Action::ChangeRole { target: last, new_role: Owner });
        assert_eq!(same, Ok(()));
    }

    #[test]
    fn disable_table() {
        for actor in Role::ALL {
            for subject in Role::ALL {
                let expected = match subject {
                    Guest | Member => actor >= Admin,
                    Admin | Owner => actor == Owner,
                };
                let action = Action::SetDisabled { target: target(subject), disabled: true };
                assert_eq!(can(actor, action), expected, "{actor} disabling {subject}");
            }
        }
        let me = TargetUser { role: Admin, is_self: true, is_last_owner: false };
        assert!(!can(Owner, Action::SetDisabled { target: me, disabled: true }));
        assert!(can(Owner, Action::SetDisabled { target: me, disabled: false }));
    }

    #[test]
    fn session_revocation_follows_the_management_rule() {
        for actor in Role::ALL {
            for subject in Role::ALL {
                let expected = may_manage_role(actor, subject);
                let action = Action::RevokeUserSessions { target: target(subject) };
                assert_eq!(can(actor, action), expected, "{actor} revoking {subject}");
            }
        }
    }
}
