//! Channels as the domain sees them: kinds, channel roles, event kinds, and the channel
//! permission policy — one pure function of (actor, channel, action), tested below as a table.
//! A channel the actor may not see answers "not found", never "forbidden", so its existence
//! does not leak.

use crate::role::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    /// A direct-message channel between two users (or a user and themselves).
    Direct,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Direct => "dm",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(ChannelKind::Public),
            "private" => Some(ChannelKind::Private),
            "dm" => Some(ChannelKind::Direct),
            _ => None,
        }
    }
}

/// A member's role inside one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelRole {
    Admin,
    Member,
}

impl ChannelRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelRole::Admin => "admin",
            ChannelRole::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(ChannelRole::Admin),
            "member" => Some(ChannelRole::Member),
            _ => None,
        }
    }
}

/// What happened in a channel; each is one event with its own `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    MemberJoined,
    MemberLeft,
    ChannelUpdated,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessageCreated => "message.created",
            EventKind::MessageEdited => "message.edited",
            EventKind::MessageDeleted => "message.deleted",
            EventKind::MemberJoined => "member.joined",
            EventKind::MemberLeft => "member.left",
            EventKind::ChannelUpdated => "channel.updated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            EventKind::MessageCreated,
            EventKind::MessageEdited,
            EventKind::MessageDeleted,
            EventKind::MemberJoined,
            EventKind::MemberLeft,
            EventKind::ChannelUpdated,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// The actor as a channel sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelActor {
    pub server_role: Role,
    /// `None` when not a member.
    pub membership: Option<ChannelRole>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelFacts {
    pub kind: ChannelKind,
    pub archived: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelAction {
    /// See the channel, its name and topic, and its member list.
    View,
    /// Read history and receive live events.
    Read,
    Post,
    Join,
    Leave,
    AddMember,
    /// Remove someone else.
    RemoveMember,
    /// Rename, change the topic, archive or unarchive.
    Update,
    EditMessage {
        is_sender: bool,
    },
    DeleteMessage {
        is_sender: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelDenied {
    /// Not visible to the actor: answer 404.
    NotFound,
    /// Visible, but the actor may not do this: answer 403.
    Forbidden,
}

/// Whether the actor can see the channel at all: members see their channels; members and above
/// see every public channel; guests see only channels they were added to.
pub fn can_see(actor: ChannelActor, channel: ChannelFacts) -> bool {
    actor.membership.is_some() || (channel.kind == ChannelKind::Public && actor.server_role >= Role::Member)
}

/// Decides whether `actor` may perform `action` on `channel`.
pub fn authorize_channel(
    actor: ChannelActor,
    channel: ChannelFacts,
    action: ChannelAction,
) -> Result<(), ChannelDenied> {
    if !can_see(actor, channel) {
        return Err(ChannelDenied::NotFound);
    }
    let member = actor.membership.is_some();
    let channel_admin = actor.membership == Some(ChannelRole::Admin);
    let server_admin = actor.server_role.is_administrator();
    let shared = channel.kind != ChannelKind::Direct;
    let open = !channel.archived;
    let allowed = match action {
        ChannelAction::View => true,
        ChannelAction::Read => member,
        ChannelAction::Post => member && open,
        ChannelAction::Join => channel.kind == ChannelKind::Public && open,
        ChannelAction::Leave => member && shared,
        ChannelAction::AddMember => shared && open && (channel_admin || server_admin),
        ChannelAction::RemoveMember | ChannelAction::Update => shared && (channel_admin || server_admin),
        ChannelAction::EditMessage { is_sender } => member && is_sender && open,
        ChannelAction::DeleteMessage { is_sender } => {
            (member && is_sender) || (shared && (channel_admin || server_admin))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ChannelDenied::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::{Direct, Private, Public};

    const ALL_KINDS: [ChannelKind; 3] = [Public, Private, Direct];
    const MEMBERSHIPS: [Option<ChannelRole>; 3] = [None, Some(ChannelRole::Member), Some(ChannelRole::Admin)];

    fn decide(
        role: Role,
        membership: Option<ChannelRole>,
        kind: ChannelKind,
        archived: bool,
        action: ChannelAction,
    ) -> Result<(), ChannelDenied> {
        authorize_channel(ChannelActor { server_role: role, membership }, ChannelFacts { kind, archived }, action)
    }

    #[test]
    fn invisible_channels_are_not_found_for_every_action() {
        let actions = [
            ChannelAction::View,
            ChannelAction::Read,
            ChannelAction::Post,
            ChannelAction::Join,
            ChannelAction::Leave,
            ChannelAction::AddMember,
            ChannelAction::RemoveMember,
            ChannelAction::Update,
            ChannelAction::EditMessage { is_sender: true },
            ChannelAction::DeleteMessage { is_sender: true },
        ];
        for role in Role::ALL {
            for kind in [Private, Direct] {
                for action in actions {
                    assert_eq!(
                        decide(role, None, kind, false, action),
                        Err(ChannelDenied::NotFound),
                        "{role} {kind:?} {action:?}"
                    );
                }
            }
            // Guests do not see public channels they are not in.
            let expected = if role == Role::Guest { Err(ChannelDenied::NotFound) } else { Ok(()) };
            assert_eq!(decide(role, None, Public, false, ChannelAction::View), expected, "{role}");
        }
    }

    #[test]
    fn reading_and_posting_need_membership_and_posting_an_open_channel() {
        for role in Role::ALL {
            for kind in ALL_KINDS {
                for membership in MEMBERSHIPS {
                    for archived in [false, true] {
                        let visible = membership.is_some() || (kind == Public && role >= Role::Member);
                        let read = decide(role, membership, kind, archived, ChannelAction::Read);
                        let post = decide(role, membership, kind, archived, ChannelAction::Post);
                        if !visible {
                            assert_eq!(read, Err(ChannelDenied::NotFound));
                            continue;
                        }
                        assert_eq!(read.is_ok(), membership.is_some(), "{role} {kind:?} {membership:?}");
                        assert_eq!(
                            post.is_ok(),
                            membership.is_some() && !archived,
                            "{role} {kind:?} {membership:?} {archived}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_open_public_channels_can_be_joined() {
        assert!(decide(Role::Member, None, Public, false, ChannelAction::Join).is_ok());
        assert_eq!(decide(Role::Member, None, Public, true, ChannelAction::Join), Err(ChannelDenied::Forbidden));
        assert_eq!(decide(Role::Owner, None, Private, false, ChannelAction::Join), Err(ChannelDenied::NotFound));
        assert_eq!(
            decide(Role::Member, Some(ChannelRole::Member), Direct, false, ChannelAction::Join),
            Err(ChannelDenied::Forbidden)
        );
    }

    #[test]
    fn membership_management_is_for_channel_admins_and_server_admins() {
        for role in Role::ALL {
            for membership in [Some(ChannelRole::Member), Some(ChannelRole::Admin)] {
                for kind in ALL_KINDS {
                    let expected =
                        kind != Direct && (membership == Some(ChannelRole::Admin) || role.is_administrator());
                    for action in [ChannelAction::AddMember, ChannelAction::RemoveMember, ChannelAction::Update] {
                        assert_eq!(
                            decide(role, membership, kind, false, action).is_ok(),
                            expected,
                            "{role} {membership:?} {kind:?} {action:?}"
                        );
                    }
                }
            }
        }
        assert!(decide(Role::Member, Some(ChannelRole::Member), Direct, false, ChannelAction::Leave).is_err());
        assert!(decide(Role::Member, Some(ChannelRole::Member), Private, false, ChannelAction::Leave).is_ok());
    }

    #[test]
    fn edits_are_the_senders_and_deletes_the_sender_or_a_moderator() {
        let member = Some(ChannelRole::Member);
        let admin = Some(ChannelRole::Admin);
        assert!(decide(Role::Member, member, Public, false, ChannelAction::EditMessage { is_sender: true }).is_ok());
        assert!(decide(Role::Owner, admin, Public, false, ChannelAction::EditMessage { is_sender: false }).is_err());
        assert!(decide(Role::Member, member, Public, true, ChannelAction::EditMessage { is_sender: true }).is_err());
        assert!(decide(Role::Member, member, Public, false, ChannelAction::DeleteMessage { is_sender: true }).is_ok());
        assert!(decide(Role::Member, member, Public, false, ChannelAction::DeleteMessage { is_sender: false }).is_err());
        assert!(decide(Role::Member, admin, Private, false, ChannelAction::DeleteMessage { is_sender: false }).is_ok());
        assert!(decide(Role::Admin, member, Public, false, ChannelAction::DeleteMessage { is_sender: false }).is_ok());
        // In a DM only the sender deletes.
        assert!(decide(Role::Owner, member, Direct, false, ChannelAction::DeleteMessage { is_sender: false }).is_err());
    }

    #[test]
    fn names_round_trip() {
        for kind in ALL_KINDS {
            assert_eq!(ChannelKind::parse(kind.as_str()), Some(kind));
        }
        for role in [ChannelRole::Admin, ChannelRole::Member] {
            assert_eq!(ChannelRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(EventKind::parse("message.created"), Some(EventKind::MessageCreated));
        assert_eq!(EventKind::parse("nope"), None);
    }
}
