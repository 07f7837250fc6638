//! A FUSE file system that keeps every file in memory and knows which of
//! its changes a power cut would keep: a file's data as of its last fsync,
//! a directory's entries as of its last fsync (create, rename, unlink,
//! link all change a directory). Nothing else survives: the strict reading
//! of POSIX that Jepsen's LazyFS and SQLite's crash VFS test against.
//!
//! The layer records the state a power cut would leave ([`Remains`]) at
//! every fsync, directory fsync and rename it serves, and also a torn one:
//! the same state with the newest write not yet synced half kept. A cut
//! ([`Remains::write_to`]) is then what a fresh boot would find. Mounting
//! needs `/dev/fuse` and root ([`available`] says why not).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const ROOT: u64 = 1;
const TTL: Duration = Duration::from_secs(0);

/// Why the layer cannot run here, if it cannot.
pub(crate) fn available() -> Result<(), String> {
    if !Utf8Path::new("/dev/fuse").exists() {
        return Err("no /dev/fuse".to_owned());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("mounting FUSE without fusermount needs root".to_owned());
    }
    Ok(())
}

/// What a power cut at one moment leaves: every file reachable through
/// synced directory entries, with its synced data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remains {
    /// What the layer served just before: `fsync <path>`, `rename …`.
    pub(crate) at: String,
    /// Whether one unsynced write is half kept.
    pub(crate) torn: bool,
    /// Folders, by path relative to the mount.
    pub(crate) dirs: Vec<Utf8PathBuf>,
    /// Files, by path relative to the mount, with their bytes and mode.
    pub(crate) files: BTreeMap<Utf8PathBuf, (Arc<Vec<u8>>, u32)>,
}

impl Remains {
    /// Write the remains into `root` (which must not exist yet).
    pub(crate) fn write_to(&self, root: &Utf8Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs_err::create_dir_all(root)?;
        for dir in &self.dirs {
            fs_err::create_dir_all(root.join(dir))?;
        }
        for (path, (bytes, mode)) in &self.files {
            let to = root.join(path);
            fs_err::write(&to, bytes.as_slice())?;
            fs_err::set_permissions(&to, std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        Ok(())
    }

    /// The same bytes and names, whatever was served before.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.dirs == other.dirs && self.files == other.files
    }
}

#[derive(Debug)]
enum Kind {
    File {
        data: Vec<u8>,
        /// The data as of the last fsync (empty for a file never synced).
        synced: Arc<Vec<u8>>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        /// The entries as of the last fsync of this folder.
        synced: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

/// The newest write since its file was last synced.
#[derive(Debug, Clone)]
struct Pending {
    ino: u64,
    offset: u64,
    data: Vec<u8>,
}

/// The file system's state, shared between the FUSE thread and the test.
#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
    /// The newest write to each file since that file was last synced.
    pending: BTreeMap<u64, Pending>,
    cuts: Vec<Remains>,
}

impl State {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, size) = match &node.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64),
            Kind::Dir { .. } => (FileType::Directory, 0),
        };
        let nlink = match &node.kind {
            Kind::Dir { .. } => 2,
            Kind::File { .. } => self
                .nodes
                .values()
                .filter_map(|n| match &n.kind {
                    Kind::Dir { entries, .. } => {
                        Some(entries.values().filter(|&&i| i == ino).count() as u32)
                    }
                    Kind::File { .. } => None,
                })
                .sum::<u32>()
                .max(1),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: (node.mode & 0o7777) as u16,
            nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, dir: u64) -> Option<&mut BTreeMap<OsString, u64>> {
        match &mut self.nodes.get_mut(&dir)?.kind {
            Kind::Dir { entries, .. } => Some(entries),
            Kind::File { .. } => None,
        }
    }

    fn lookup(&self, dir: u64, name: &OsStr) -> Option<u64> {
        match &self.nodes.get(&dir)?.kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            Kind::File { .. } => None,
        }
    }

    fn add(&mut self, kind: Kind, mode: u32, req: &Request<'_>) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                kind,
                mode,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
            },
        );
        ino
    }

    /// What a power cut now would leave.
    fn remains(&self, at: String) -> Remains {
        let mut remains = Remains {
            at,
            torn: false,
            dirs: Vec::new(),
            files: BTreeMap::new(),
        };
        self.walk(ROOT, Utf8PathBuf::new(), &mut remains, 0);
        remains
    }

    fn walk(&self, dir: u64, path: Utf8PathBuf, remains: &mut Remains, depth: u32) {
        let Some(Kind::Dir { synced, .. }) = self.nodes.get(&dir).map(|n| &n.kind) else {
            return;
        };
        if depth > 32 {
            return;
        }
        for (name, &ino) in synced {
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let child = path.join(String::from_utf8_lossy(name.as_bytes()).as_ref());
            match &node.kind {
                Kind::File { synced, .. } => {
                    remains.files.insert(child, (Arc::clone(synced), node.mode));
                }
                Kind::Dir { .. } => {
                    remains.dirs.push(child.clone());
                    self.walk(ino, child, remains, depth + 1);
                }
            }
        }
    }

    /// The paths through synced entries that lead to `ino`.
    fn synced_paths(&self, ino: u64) -> Vec<Utf8PathBuf> {
        let mut found = Vec::new();
        let remains = self.remains(String::new());
        for (path, _) in remains.files.iter() {
            if self.resolve_synced(path) == Some(ino) {
                found.push(path.clone());
            }
        }
        found
    }

    fn resolve_synced(&self, path: &Utf8Path) -> Option<u64> {
        let mut at = ROOT;
        for part in path.components() {
            at = match &self.nodes.get(&at)?.kind {
                Kind::Dir { synced, .. } => *synced.get(OsStr::new(part.as_str()))?,
                Kind::File { .. } => return None,
            };
        }
        Some(at)
    }

    /// Record the cuts at this moment: the plain one and, for each file
    /// with a write not yet synced, a torn one that keeps half of its
    /// newest write.
    fn cut_here(&mut self, at: String) {
        let plain = self.remains(at.clone());
        for pending in self.pending.values() {
            let paths = self.synced_paths(pending.ino);
            if paths.is_empty() {
                continue;
            }
            let mut torn = plain.clone();
            torn.torn = true;
            torn.at = format!(
                "{at} (torn: half of the {} bytes written at {} to {} kept)",
                pending.data.len(),
                pending.offset,
                paths[0]
            );
            let half = &pending.data[..pending.data.len() / 2];
            let start = usize::try_from(pending.offset).unwrap_or(usize::MAX);
            for path in paths {
                if let Some((bytes, _mode)) = torn.files.get_mut(&path) {
                    let mut data = bytes.as_ref().clone();
                    if data.len() < start + half.len() {
                        data.resize(start + half.len(), 0);
                    }
                    data[start..start + half.len()].copy_from_slice(half);
                    *bytes = Arc::new(data);
                }
            }
            self.cuts.push(torn);
        }
        self.cuts.push(plain);
    }

    /// An fsync of `ino`: a file's data, or a folder's entries, are now
    /// what a cut keeps of it; the cuts right after it are recorded.
    fn sync(&mut self, ino: u64) -> Result<(), i32> {
        let at = format!("after fsync {}", self.path_of(ino));
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { data, synced }) => *synced = Arc::new(data.clone()),
            Some(Kind::Dir { entries, synced }) => *synced = entries.clone(),
            None => return Err(libc::ENOENT),
        }
        self.pending.remove(&ino);
        self.cut_here(at);
        Ok(())
    }

    /// Cut the power: from now on the layer serves what remains.
    fn cut(&mut self) {
        for node in self.nodes.values_mut() {
            match &mut node.kind {
                Kind::File { data, synced } => *data = synced.as_ref().clone(),
                Kind::Dir { entries, synced } => *entries = synced.clone(),
            }
        }
        self.pending.clear();
    }

    fn path_of(&self, ino: u64) -> String {
        fn find(state: &State, dir: u64, want: u64, path: &str, depth: u32) -> Option<String> {
            let Kind::Dir { entries, .. } = &state.nodes.get(&dir)?.kind else {
                return None;
            };
            for (name, &i) in entries {
                let p = format!("{path}/{}", name.to_string_lossy());
                if i == want {
                    return Some(p);
                }
                if depth < 32 {
                    if let Some(found) = find(state, i, want, &p, depth + 1) {
                        return Some(found);
                    }
                }
            }
            None
        }
        if ino == ROOT {
            return "/".to_owned();
        }
        find(self, ROOT, ino, "", 0).unwrap_or_else(|| format!("inode {ino}"))
    }
}

/// The layer: the FUSE side holds one, the test another.
#[derive(Debug, Clone)]
pub(crate) struct LazyFs {
    state: Arc<Mutex<State>>,
}

impl LazyFs {
    /// A layer holding a copy of the folder `from` (every byte and entry
    /// synced), with the mount's root owned like `from`.
    pub(crate) fn with_copy_of(from: &Utf8Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let mut state = State {
            nodes: HashMap::new(),
            next: ROOT + 1,
            pending: BTreeMap::new(),
            cuts: Vec::new(),
        };
        let meta = fs_err::metadata(from)?;
        state.nodes.insert(
            ROOT,
            Node {
                kind: Kind::Dir {
                    entries: BTreeMap::new(),
                    synced: BTreeMap::new(),
                },
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: SystemTime::now(),
            },
        );
        fn load(state: &mut State, dir: u64, from: &Utf8Path) -> std::io::Result<()> {
            use std::os::unix::fs::MetadataExt;
            for entry in fs_err::read_dir(from)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let path = Utf8PathBuf::try_from(entry.path())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let kind = if meta.is_dir() {
                    Kind::Dir {
                        entries: BTreeMap::new(),
                        synced: BTreeMap::new(),
                    }
                } else {
                    let data = fs_err::read(&path)?;
                    Kind::File {
                        synced: Arc::new(data.clone()),
                        data,
                    }
                };
                let ino = state.next;
                state.next += 1;
                state.nodes.insert(
                    ino,
                    Node {
                        kind,
                        mode: meta.mode(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        mtime: SystemTime::now(),
                    },
                );
                if let Some(Kind::Dir { entries, synced }) =
                    state.nodes.get_mut(&dir).map(|n| &mut n.kind)
                {
                    entries.insert(entry.file_name(), ino);
                    synced.insert(entry.file_name(), ino);
                }
                if meta.is_dir() {
                    load(state, ino, &path)?;
                }
            }
            Ok(())
        }
        load(&mut state, ROOT, from)?;
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Mount the layer at `mountpoint` (an empty folder) until the session
    /// returned is dropped.
    pub(crate) fn mount(&self, mountpoint: &Utf8Path) -> std::io::Result<fuser::BackgroundSession> {
        let options = [
            MountOption::FSName("sysdb-lazyfs".to_owned()),
            MountOption::RW,
        ];
        fuser::spawn_mount2(self.clone(), mountpoint, &options)
    }

    /// Every cut recorded so far, in the order they happened.
    pub(crate) fn cuts(&self) -> Vec<Remains> {
        self.state.lock().expect("layer state").cuts.clone()
    }

    /// Cut the power now: every change not synced is gone, and the mount
    /// serves what remains (as a fresh boot would find it).
    pub(crate) fn cut(&self) {
        self.state.lock().expect("layer state").cut();
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("layer state"))
    }
}

impl Filesystem for LazyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        self.with(|s| match s.lookup(parent, name).and_then(|i| s.attr(i)) {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOENT),
        });
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        self.with(|s| match s.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        });
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        self.with(|s| {
            let Some(node) = s.nodes.get_mut(&ino) else {
                return reply.error(libc::ENOENT);
            };
            if let Some(mode) = mode {
                node.mode = mode;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            if let Some(size) = size {
                match &mut node.kind {
                    Kind::File { data, .. } => {
                        data.resize(usize::try_from(size).unwrap_or(usize::MAX), 0);
                        node.mtime = SystemTime::now();
                    }
                    Kind::Dir { .. } => return reply.error(libc::EISDIR),
                }
            }
            match s.attr(ino) {
                Some(attr) => reply.attr(&TTL, &attr),
                None => reply.error(libc::ENOENT),
            }
        });
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.with(|s| {
            if s.lookup(parent, name).is_some() {
                return reply.error(libc::EEXIST);
            }
            let kind = Kind::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
            };
            let ino = s.add(kind, libc::S_IFDIR | (mode & !umask & 0o7777), req);
            match s.entries(parent) {
                Some(entries) => {
                    entries.insert(name.to_owned(), ino);
                }
                None => return reply.error(libc::ENOTDIR),
            }
            match s.attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, 0),
                None => reply.error(libc::EIO),
            }
        });
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.with(|s| {
            if let Some(ino) = s.lookup(parent, name) {
                if flags & libc::O_EXCL != 0 {
                    return reply.error(libc::EEXIST);
                }
                return match s.attr(ino) {
                    Some(attr) => reply.created(&TTL, &attr, 0, 0, 0),
                    None => reply.error(libc::EIO),
                };
            }
            let kind = Kind::File {
                data: Vec::new(),
                synced: Arc::new(Vec::new()),
            };
            let ino = s.add(kind, libc::S_IFREG | (mode & !umask & 0o7777), req);
            match s.entries(parent) {
                Some(entries) => {
                    entries.insert(name.to_owned(), ino);
                }
                None => return reply.error(libc::ENOTDIR),
            }
            match s.attr(ino) {
                Some(attr) => reply.created(&TTL, &attr, 0, 0, 0),
                None => reply.error(libc::EIO),
            }
        });
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.with(|s| match s.entries(parent).and_then(|e| e.remove(name)) {
            Some(_) => reply.ok(),
            None => reply.error(libc::ENOENT),
        });
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.with(|s| {
            let Some(ino) = s.lookup(parent, name) else {
                return reply.error(libc::ENOENT);
            };
            match s.nodes.get(&ino).map(|n| &n.kind) {
                Some(Kind::Dir { entries, .. }) if entries.is_empty() => {}
                Some(Kind::Dir { .. }) => return reply.error(libc::ENOTEMPTY),
                _ => return reply.error(libc::ENOTDIR),
            }
            if let Some(entries) = s.entries(parent) {
                entries.remove(name);
            }
            reply.ok();
        });
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        self.with(|s| {
            let result = (|| {
                if flags & !libc::RENAME_NOREPLACE != 0 {
                    return Err(libc::EINVAL);
                }
                let ino = s.lookup(parent, name).ok_or(libc::ENOENT)?;
                if let Some(old) = s.lookup(newparent, newname) {
                    if flags & libc::RENAME_NOREPLACE != 0 {
                        return Err(libc::EEXIST);
                    }
                    if let Some(Kind::Dir { entries, .. }) = s.nodes.get(&old).map(|n| &n.kind) {
                        if !entries.is_empty() {
                            return Err(libc::ENOTEMPTY);
                        }
                    }
                }
                s.entries(newparent).ok_or(libc::ENOTDIR)?;
                let at = format!(
                    "rename {} -> {}/{}",
                    format_args!("{}/{}", s.path_of(parent), name.to_string_lossy()),
                    s.path_of(newparent),
                    newname.to_string_lossy()
                );
                // A cut just before the rename, and the rename itself.
                s.cut_here(format!("before {at}"));
                s.entries(parent).ok_or(libc::ENOTDIR)?.remove(name);
                s.entries(newparent)
                    .ok_or(libc::ENOTDIR)?
                    .insert(newname.to_owned(), ino);
                Ok(())
            })();
            match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.with(|s| {
            if s.lookup(newparent, newname).is_some() {
                return reply.error(libc::EEXIST);
            }
            match s.entries(newparent) {
                Some(entries) => {
                    entries.insert(newname.to_owned(), ino);
                }
                None => return reply.error(libc::ENOTDIR),
            }
            match s.attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, 0),
                None => reply.error(libc::ENOENT),
            }
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        self.with(|s| match s.nodes.get(&ino) {
            // Direct I/O: every write reaches the layer when it is made.
            Some(_) => reply.opened(0, fuser::consts::FOPEN_DIRECT_IO),
            None => reply.error(libc::ENOENT),
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.with(|s| match s.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::File { data, .. }) => {
                let start = usize::try_from(offset).unwrap_or(0).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Kind::Dir { .. }) => reply.error(libc::EISDIR),
            None => reply.error(libc::ENOENT),
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        bytes: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        self.with(|s| {
            let Some(node) = s.nodes.get_mut(&ino) else {
                return reply.error(libc::ENOENT);
            };
            let Kind::File { data, .. } = &mut node.kind else {
                return reply.error(libc::EISDIR);
            };
            let start = usize::try_from(offset).unwrap_or(0);
            if data.len() < start + bytes.len() {
                data.resize(start + bytes.len(), 0);
            }
            data[start..start + bytes.len()].copy_from_slice(bytes);
            node.mtime = SystemTime::now();
            s.pending.insert(
                ino,
                Pending {
                    ino,
                    offset: start as u64,
                    data: bytes.to_vec(),
                },
            );
            reply.written(bytes.len() as u32);
        });
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.with(|s| match s.sync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        self.with(|s| match s.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::Dir { .. }) => reply.opened(0, 0),
            Some(Kind::File { .. }) => reply.error(libc::ENOTDIR),
            None => reply.error(libc::ENOENT),
        });
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        self.with(|s| {
            let Some(Kind::Dir { entries, .. }) = s.nodes.get(&ino).map(|n| &n.kind) else {
                return reply.error(libc::ENOTDIR);
            };
            let mut all = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (ino, FileType::Directory, OsString::from("..")),
            ];
            for (name, &i) in entries {
                let kind = match s.nodes.get(&i).map(|n| &n.kind) {
                    Some(Kind::Dir { .. }) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                all.push((i, kind, name.clone()));
            }
            for (n, (i, kind, name)) in all
                .into_iter()
                .enumerate()
                .skip(usize::try_from(offset).unwrap_or(0))
            {
                if reply.add(i, (n + 1) as i64, kind, &name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.with(|s| match s.sync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // 64 GiB, nearly all free: the durable copy checks for room.
        let blocks = 16 * 1024 * 1024;
        reply.statfs(
            blocks,
            blocks - 1024,
            blocks - 1024,
            1 << 20,
            1 << 20,
            4096,
            255,
            4096,
        );
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the kernel: what was synced stays after a cut, and nothing
    /// else does.
    #[test]
    fn after_a_cut_the_layer_serves_only_what_was_synced() {
        if let Err(why) = available() {
            assert!(
                !std::env::var("SYSDB_POWER_CUTS").is_ok_and(|v| v == "required"),
                "SYSDB_POWER_CUTS=required, and the layer cannot run: {why}"
            );
            eprintln!("the layer cannot run here: {why}");
            return;
        }
        let source = tempfile::tempdir().expect("source");
        fs_err::write(source.path().join("a"), "old").expect("a");
        let from = Utf8PathBuf::try_from(source.path().to_owned()).expect("utf-8");
        let layer = LazyFs::with_copy_of(&from).expect("load");
        let mount = tempfile::tempdir().expect("mount point");
        let at = Utf8PathBuf::try_from(mount.path().to_owned()).expect("utf-8");
        let session = layer.mount(&at).expect("mount");
        let sync = |path: &Utf8Path| fs_err::File::open(path).and_then(|f| f.sync_all());

        fs_err::write(at.join("a"), "new").expect("write a");
        sync(&at.join("a")).expect("fsync a");
        // A file and its folder synced: kept.
        fs_err::write(at.join("c"), "c").expect("write c");
        sync(&at.join("c")).expect("fsync c");
        sync(&at).expect("fsync the folder");
        // A file synced whose folder is not synced after: its name is lost.
        fs_err::write(at.join("b"), "b").expect("write b");
        sync(&at.join("b")).expect("fsync b");
        // Not synced: a write, a rename, a new folder.
        fs_err::write(at.join("a"), "ZZZZZZ").expect("write a again");
        fs_err::rename(at.join("c"), at.join("d")).expect("rename c");
        fs_err::create_dir(at.join("e")).expect("mkdir e");
        let recorded = layer.cuts();

        layer.cut();
        let mut names: Vec<String> = fs_err::read_dir(&at)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(fs_err::read_to_string(at.join("a")).expect("a"), "new");
        assert_eq!(fs_err::read_to_string(at.join("c")).expect("c"), "c");
        drop(session);

        // The last cut recorded (before the rename) is what the mount
        // served; its torn variant keeps half of the unsynced write.
        let last = recorded.iter().rev().find(|c| !c.torn).expect("a cut");
        assert_eq!(
            last.files.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        let torn = recorded.iter().rev().find(|c| c.torn).map(|c| {
            c.files
                .get(Utf8Path::new("a"))
                .map(|(bytes, _)| bytes.as_slice().to_vec())
        });
        assert_eq!(torn, Some(Some(b"ZZZ".to_vec())), "{recorded:?}");
    }
}
