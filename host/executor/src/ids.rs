//! How the owners that image layers name are stored on the host.
//!
//! A command sees user and group ids through a user namespace. When kiln can
//! write a multi-id map, image ids are shifted into a host range and stored
//! on disk as is; when it cannot, every id collapses onto one unprivileged
//! user and the image's owners must be remembered elsewhere so that the
//! layers kiln writes still carry them.

/// How user and group ids seen by the command map to owners on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IdMap {
    /// Inside id N is `base + N` on disk, for N < count (base 0 = identity).
    /// Used when kiln can write a multi-id map (root).
    Shift {
        /// The host id that inside id 0 maps to.
        base: u32,
        /// How many consecutive ids are mapped.
        count: u32,
    },
    /// Every id inside is the one unprivileged user kiln runs as; files on
    /// disk all belong to it, and image owners are kept in a side table
    /// instead (see [`Rootfs`](crate::rootfs::Rootfs)).
    Single,
}

/// The id an unmapped owner appears as inside a user namespace (the kernel's
/// default `overflowuid`), used when a file on disk has an owner outside the
/// shifted range.
const OVERFLOW_ID: u32 = 65534;

/// Where an image owner is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Chown the file to these host ids.
    Disk(u32, u32),
    /// Leave the file alone and record these image ids in the side table.
    Table(u32, u32),
}

impl IdMap {
    /// Where the owner `uid:gid` named by a layer entry goes, or `None` when
    /// the map cannot represent it (an id at or beyond `count`, or beyond
    /// 32 bits).
    pub(crate) fn place(&self, uid: u64, gid: u64) -> Option<Placement> {
        let uid = u32::try_from(uid).ok()?;
        let gid = u32::try_from(gid).ok()?;
        match *self {
            IdMap::Shift { base, count } => {
                let shift = |id: u32| (id < count).then(|| base.checked_add(id)).flatten();
                Some(Placement::Disk(shift(uid)?, shift(gid)?))
            }
            IdMap::Single => Some(Placement::Table(uid, gid)),
        }
    }

    /// The image owner of a file whose host owner is `disk`. Under `Shift`
    /// the ids are shifted back (unmapped ones become the overflow id, as the
    /// command saw them); under `Single` the disk says nothing, so the owner
    /// comes from `recorded`.
    pub(crate) fn image_owner(
        &self,
        disk: (u32, u32),
        recorded: impl FnOnce() -> (u32, u32),
    ) -> (u32, u32) {
        match *self {
            IdMap::Shift { base, count } => {
                let unshift = |id: u32| {
                    id.checked_sub(base)
                        .filter(|inside| *inside < count)
                        .unwrap_or(OVERFLOW_ID)
                };
                (unshift(disk.0), unshift(disk.1))
            }
            IdMap::Single => recorded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_maps_into_the_range_and_refuses_outside() {
        let ids = IdMap::Shift {
            base: 100_000,
            count: 65_536,
        };
        assert_eq!(ids.place(0, 5), Some(Placement::Disk(100_000, 100_005)));
        assert_eq!(ids.place(65_536, 0), None);
        assert_eq!(ids.place(0, u64::MAX), None);
        assert_eq!(ids.image_owner((100_007, 100_000), || (9, 9)), (7, 0));
        assert_eq!(ids.image_owner((0, 200_000), || (9, 9)), (65534, 65534));
    }

    #[test]
    fn single_keeps_owners_in_the_table() {
        assert_eq!(
            IdMap::Single.place(1000, 50),
            Some(Placement::Table(1000, 50))
        );
        assert_eq!(IdMap::Single.image_owner((0, 0), || (3, 4)), (3, 4));
    }
}
