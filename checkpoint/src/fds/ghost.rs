//! Deleted-but-open regular files.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;

pub fn dump(_t: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<pb::FdTypes> {
    Err(f.unsupported("a deleted file; not supported yet"))
}
