//! eventfd, signalfd and timerfd: their whole state is in fdinfo.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;

pub fn dump_eventfd(_t: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<pb::FdTypes> {
    Err(f.unsupported("an eventfd; not supported yet"))
}

pub fn dump_signalfd(_t: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<pb::FdTypes> {
    Err(f.unsupported("a signalfd; not supported yet"))
}

pub fn dump_timerfd(_t: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<pb::FdTypes> {
    Err(f.unsupported("a timerfd; not supported yet"))
}
