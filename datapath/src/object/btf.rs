//! The small part of BTF that map definitions need: the type table and its strings.
//!
//! Only what `.maps` parsing reads is decoded (sizes, pointers, arrays, struct members,
//! variables and data sections); every other kind is skipped by its documented length so
//! the type ids stay right. Little-endian only, like the objects clang builds for x86.

use std::fmt;

const BTF_MAGIC: u16 = 0xeb9f;

/// A decoded BTF type. Kinds the loader never inspects keep only what sizing needs.
#[derive(Debug, Clone)]
pub(crate) enum BtfType {
    Void,
    Int {
        size: u32,
    },
    Ptr {
        target: u32,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    Struct {
        size: u32,
        members: Vec<Member>,
    },
    Enum {
        size: u32,
    },
    /// typedef, volatile, const, restrict, type_tag: transparent for sizing.
    Modifier {
        target: u32,
    },
    FuncProto,
    Var {
        name: String,
        target: u32,
    },
    Datasec {
        name: String,
        vars: Vec<DatasecVar>,
    },
    Float {
        size: u32,
    },
    /// fwd, func, decl_tag: never sized.
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub name: String,
    pub target: u32,
    pub bit_offset: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct DatasecVar {
    pub target: u32,
    pub offset: u32,
    pub size: u32,
}

#[derive(Debug)]
pub(crate) struct BtfError(pub String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Btf {
    types: Vec<BtfType>,
}

fn err<T>(msg: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError(msg.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let end = self.pos + 4;
        let Some(b) = self.data.get(self.pos..end) else {
            return err(format!("type section truncated at byte {}", self.pos));
        };
        self.pos = end;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn skip(&mut self, n: usize) -> Result<(), BtfError> {
        if self.pos + n > self.data.len() {
            return err(format!("type section truncated at byte {}", self.pos));
        }
        self.pos += n;
        Ok(())
    }
}

fn le32(data: &[u8], at: usize) -> Result<u32, BtfError> {
    match data.get(at..at + 4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => err("header truncated"),
    }
}

impl Btf {
    pub(crate) fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(BTF_MAGIC) {
            return err("bad magic (not little-endian BTF)");
        }
        let hdr_len = le32(data, 4)? as usize;
        let type_off = le32(data, 8)? as usize;
        let type_len = le32(data, 12)? as usize;
        let str_off = le32(data, 16)? as usize;
        let str_len = le32(data, 20)? as usize;
        let types_data = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or_else(|| BtfError("type section out of bounds".into()))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| BtfError("string section out of bounds".into()))?;
        let string_at = |off: u32| -> Result<String, BtfError> {
            let tail = strings
                .get(off as usize..)
                .ok_or_else(|| BtfError(format!("string offset {off} out of bounds")))?;
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
        };

        let mut types = vec![BtfType::Void];
        let mut r = Reader {
            data: types_data,
            pos: 0,
        };
        while r.pos < types_data.len() {
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let t = match kind {
                1 => {
                    r.skip(4)?;
                    BtfType::Int { size: size_or_type }
                }
                2 => BtfType::Ptr {
                    target: size_or_type,
                },
                3 => {
                    let elem = r.u32()?;
                    let _index = r.u32()?;
                    let nelems = r.u32()?;
                    BtfType::Array { elem, nelems }
                }
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let m_name = r.u32()?;
                        let target = r.u32()?;
                        let offset = r.u32()?;
                        let bit_offset = if kind_flag {
                            offset & 0xff_ffff
                        } else {
                            offset
                        };
                        members.push(Member {
                            name: string_at(m_name)?,
                            target,
                            bit_offset,
                        });
                    }
                    BtfType::Struct {
                        size: size_or_type,
                        members,
                    }
                }
                6 => {
                    r.skip(8 * vlen)?;
                    BtfType::Enum { size: size_or_type }
                }
                19 => {
                    r.skip(12 * vlen)?;
                    BtfType::Enum { size: size_or_type }
                }
                7 | 12 => BtfType::Other,
                8..=11 | 18 => BtfType::Modifier {
                    target: size_or_type,
                },
                13 => {
                    r.skip(8 * vlen)?;
                    BtfType::FuncProto
                }
                14 => {
                    r.skip(4)?;
                    BtfType::Var {
                        name: string_at(name_off)?,
                        target: size_or_type,
                    }
                }
                15 => {
                    let mut vars = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let target = r.u32()?;
                        let offset = r.u32()?;
                        let size = r.u32()?;
                        vars.push(DatasecVar {
                            target,
                            offset,
                            size,
                        });
                    }
                    BtfType::Datasec {
                        name: string_at(name_off)?,
                        vars,
                    }
                }
                16 => BtfType::Float { size: size_or_type },
                17 => {
                    r.skip(4)?;
                    BtfType::Other
                }
                other => {
                    return err(format!(
                        "unknown BTF kind {other} (type id {})",
                        types.len()
                    ))
                }
            };
            types.push(t);
        }
        Ok(Btf { types })
    }

    pub(crate) fn get(&self, id: u32) -> Result<&BtfType, BtfError> {
        self.types
            .get(id as usize)
            .ok_or_else(|| BtfError(format!("type id {id} out of range")))
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    pub(crate) fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..32 {
            match self.get(id)? {
                BtfType::Modifier { target } => id = *target,
                _ => return Ok(id),
            }
        }
        err(format!("type id {id}: modifier chain too long"))
    }

    /// The size in bytes of a type, as `sizeof` would give it.
    pub(crate) fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let id = self.resolve(id)?;
        Ok(match self.get(id)? {
            BtfType::Int { size }
            | BtfType::Struct { size, .. }
            | BtfType::Enum { size }
            | BtfType::Float { size } => *size,
            BtfType::Ptr { .. } => 8,
            BtfType::Array { elem, nelems } => self
                .size_of(*elem)?
                .checked_mul(*nelems)
                .ok_or_else(|| BtfError(format!("type id {id}: array size overflows")))?,
            other => return err(format!("type id {id} ({other:?}) has no size")),
        })
    }

    pub(crate) fn datasec(&self, name: &str) -> Option<&[DatasecVar]> {
        self.types.iter().find_map(|t| match t {
            BtfType::Datasec { name: n, vars } if n == name => Some(vars.as_slice()),
            _ => None,
        })
    }
}
