//! inotify instances and their watches.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;

pub fn dump(_t: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<pb::FdTypes> {
    Err(f.unsupported("an inotify instance; not supported yet"))
}
