//! The BPF object loader: one pure-Rust reading of a clang-built `.bpf.o` that every
//! datapath backend consumes (aya's `aya-obj` split). No syscalls.
//!
//! It produces, per program, relocated bytecode with its `.text` subprograms appended and
//! bpf-to-bpf calls linked by libbpf's rule (`imm = target - (pc + 1)`), every map `lddw`
//! marked `BPF_PSEUDO_MAP_FD` with the map's index in [`Object::maps`] as its immediate, and
//! the map definitions read from the BTF `.maps` data section, including the initial
//! programs of statically initialised `PROG_ARRAY`s (`.values = {[i] = &prog}`).
//!
//! Why not `aya-obj` (0.3.0 is what cargo resolves): it parses BTF maps and links calls
//! without a kernel, but it accepts a `values` member only for map-in-map definitions (it
//! requires a pointer to a struct, and a prog array's `values` points to a function
//! prototype), so our statically initialised tail-call arrays fail to parse, and it never
//! reports the `.rel.maps` slot initialisers. It also pins its own `object` major version
//! and an fd-oriented API. The subset we need is a few hundred lines over `object`, and
//! owning it lets the errors name the object and section.

mod btf;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use object::{Object as _, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};

use btf::{Btf, BtfType};

/// Size of one BPF instruction in bytes.
pub const INSN_SIZE: usize = 8;
/// `src_reg` of an `lddw` that loads a map reference (libbpf's `BPF_PSEUDO_MAP_FD`).
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of a `call` to a bpf-to-bpf subprogram.
pub const BPF_PSEUDO_CALL: u8 = 1;

const R_BPF_64_64: u32 = 1;
const R_BPF_64_ABS64: u32 = 2;
const R_BPF_64_32: u32 = 10;
const OP_LDDW: u8 = 0x18;
const OP_CALL: u8 = 0x85;
const SHF_EXECINSTR: u64 = 0x4;

/// A loader failure, naming the object and the section it was reading.
#[derive(Debug, Clone, thiserror::Error)]
#[error("BPF object {object}, section {section}: {message}")]
pub struct ObjectError {
    pub object: String,
    pub section: String,
    pub message: String,
}

/// The kernel's `enum bpf_map_type` for the types verdict knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    Hash,
    Array,
    ProgArray,
    PerCpuHash,
    PerCpuArray,
    LruHash,
    LruPerCpuHash,
    LpmTrie,
    RingBuf,
    /// Any other kernel map type, by number.
    Other(u32),
}

impl MapType {
    pub fn from_raw(raw: u32) -> MapType {
        match raw {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            5 => MapType::PerCpuHash,
            6 => MapType::PerCpuArray,
            9 => MapType::LruHash,
            10 => MapType::LruPerCpuHash,
            11 => MapType::LpmTrie,
            27 => MapType::RingBuf,
            other => MapType::Other(other),
        }
    }

    pub fn raw(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PerCpuHash => 5,
            MapType::PerCpuArray => 6,
            MapType::LruHash => 9,
            MapType::LruPerCpuHash => 10,
            MapType::LpmTrie => 11,
            MapType::RingBuf => 27,
            MapType::Other(raw) => raw,
        }
    }

    /// Whether the kernel keeps one value per CPU.
    pub fn is_per_cpu(self) -> bool {
        matches!(
            self,
            MapType::PerCpuHash | MapType::PerCpuArray | MapType::LruPerCpuHash
        )
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapType::Hash => f.write_str("BPF_MAP_TYPE_HASH"),
            MapType::Array => f.write_str("BPF_MAP_TYPE_ARRAY"),
            MapType::ProgArray => f.write_str("BPF_MAP_TYPE_PROG_ARRAY"),
            MapType::PerCpuHash => f.write_str("BPF_MAP_TYPE_PERCPU_HASH"),
            MapType::PerCpuArray => f.write_str("BPF_MAP_TYPE_PERCPU_ARRAY"),
            MapType::LruHash => f.write_str("BPF_MAP_TYPE_LRU_HASH"),
            MapType::LruPerCpuHash => f.write_str("BPF_MAP_TYPE_LRU_PERCPU_HASH"),
            MapType::LpmTrie => f.write_str("BPF_MAP_TYPE_LPM_TRIE"),
            MapType::RingBuf => f.write_str("BPF_MAP_TYPE_RINGBUF"),
            MapType::Other(raw) => write!(f, "map type {raw}"),
        }
    }
}

/// One map as declared in the `.maps` section, with the fields libbpf would pass to
/// `BPF_MAP_CREATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// `PROG_ARRAY` slots initialised in C (`.values = {[i] = &prog}`): (slot, program name).
    pub initial_programs: Vec<(u32, String)>,
}

/// A map reference inside a program: the `lddw` at `insn` loads map `map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRef {
    pub insn: usize,
    pub map: usize,
}

/// One entry program with its subprograms linked in.
#[derive(Debug, Clone)]
pub struct Program {
    /// The C function name.
    pub name: String,
    /// The ELF section (`tc`, `xdp`, ...), which decides the program type.
    pub section: String,
    /// Relocated bytecode, 8 bytes per instruction.
    pub bytecode: Vec<u8>,
    /// Every map `lddw`, in instruction order.
    pub map_refs: Vec<MapRef>,
}

impl Program {
    pub fn insn_count(&self) -> usize {
        self.bytecode.len() / INSN_SIZE
    }
}

/// A parsed and relocated BPF object.
#[derive(Debug, Clone)]
pub struct Object {
    /// What the object was loaded from (a path or a label), for messages.
    pub name: String,
    pub license: String,
    pub programs: Vec<Program>,
    pub maps: Vec<MapDef>,
}

impl Object {
    /// Reads and parses an object file.
    pub fn from_file(path: &Path) -> Result<Object, ObjectError> {
        let name = path.display().to_string();
        let data = std::fs::read(path).map_err(|e| ObjectError {
            object: name.clone(),
            section: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Object::parse(&name, &data)
    }

    /// Parses an object from memory; `name` only labels errors.
    pub fn parse(name: &str, data: &[u8]) -> Result<Object, ObjectError> {
        Parser::new(name, data)?.run()
    }

    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    pub fn map(&self, name: &str) -> Option<&MapDef> {
        self.maps.iter().find(|m| m.name == name)
    }

    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}

/// A function symbol inside an executable section.
#[derive(Debug, Clone)]
struct Func {
    name: String,
    section: object::SectionIndex,
    /// First instruction, as an index into the section.
    start: usize,
    len: usize,
}

struct Reloc {
    r_type: u32,
    symbol: object::SymbolIndex,
}

/// Where a map definition sits in `.maps`, for reading `.rel.maps`.
struct MapLayout {
    offset: u32,
    size: u32,
    /// Byte offset of the `values` member (prog-array initialisers), if any.
    values_off: Option<u32>,
}

#[derive(Default)]
struct MapsSection {
    index: Option<object::SectionIndex>,
    defs: Vec<MapDef>,
    layout: Vec<MapLayout>,
}

struct Parser<'d> {
    name: String,
    file: object::File<'d>,
}

impl<'d> Parser<'d> {
    fn new(name: &str, data: &'d [u8]) -> Result<Parser<'d>, ObjectError> {
        let file = object::File::parse(data).map_err(|e| ObjectError {
            object: name.into(),
            section: "-".into(),
            message: format!("not an ELF object: {e}"),
        })?;
        if file.architecture() != object::Architecture::Bpf {
            return Err(ObjectError {
                object: name.into(),
                section: "-".into(),
                message: format!("architecture is {:?}, not BPF", file.architecture()),
            });
        }
        if !file.is_little_endian() {
            return Err(ObjectError {
                object: name.into(),
                section: "-".into(),
                message: "big-endian BPF objects are not supported".into(),
            });
        }
        Ok(Parser {
            name: name.into(),
            file,
        })
    }

    fn err(&self, section: &str, message: impl Into<String>) -> ObjectError {
        ObjectError {
            object: self.name.clone(),
            section: section.into(),
            message: message.into(),
        }
    }

    fn section_name(&self, index: object::SectionIndex) -> String {
        self.file
            .section_by_index(index)
            .ok()
            .and_then(|s| s.name().ok().map(str::to_owned))
            .unwrap_or_else(|| format!("#{}", index.0))
    }

    fn run(self) -> Result<Object, ObjectError> {
        let license = self
            .file
            .section_by_name("license")
            .and_then(|s| s.data().ok())
            .map(|d| {
                let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
                String::from_utf8_lossy(&d[..end]).into_owned()
            })
            .unwrap_or_default();

        let mut maps = self.parse_maps()?;
        let funcs = self.functions()?;
        let mut programs = Vec::new();
        for (i, f) in funcs.iter().enumerate() {
            let section = self.section_name(f.section);
            if section == ".text" {
                continue;
            }
            programs.push(self.link(i, &funcs, &maps.defs, maps.index)?);
        }
        self.initial_programs(&mut maps, &programs)?;
        Ok(Object {
            name: self.name,
            license,
            programs,
            maps: maps.defs,
        })
    }

    /// Every function symbol in an executable section, in section then address order.
    fn functions(&self) -> Result<Vec<Func>, ObjectError> {
        let mut funcs = Vec::new();
        for sym in self.file.symbols() {
            if sym.kind() != object::SymbolKind::Text {
                continue;
            }
            let Some(section) = sym.section_index() else {
                continue;
            };
            let Ok(sec) = self.file.section_by_index(section) else {
                continue;
            };
            let object::SectionFlags::Elf { sh_flags } = sec.flags() else {
                continue;
            };
            if sh_flags & SHF_EXECINSTR == 0 {
                continue;
            }
            let sec_name = self.section_name(section);
            let name = sym
                .name()
                .map_err(|e| self.err(&sec_name, format!("bad symbol name: {e}")))?;
            if sym.address() % INSN_SIZE as u64 != 0 || sym.size() % INSN_SIZE as u64 != 0 {
                return Err(self.err(
                    &sec_name,
                    format!("function {name} is not instruction-aligned"),
                ));
            }
            if sym.size() == 0 {
                return Err(self.err(&sec_name, format!("function {name} has no size")));
            }
            funcs.push(Func {
                name: name.to_owned(),
                section,
                start: sym.address() as usize / INSN_SIZE,
                len: sym.size() as usize / INSN_SIZE,
            });
        }
        funcs.sort_by_key(|f| (f.section.0, f.start));
        Ok(funcs)
    }

    fn section_relocs(
        &self,
        section: object::SectionIndex,
    ) -> Result<HashMap<usize, Reloc>, ObjectError> {
        let sec_name = self.section_name(section);
        let sec = self
            .file
            .section_by_index(section)
            .map_err(|e| self.err(&sec_name, e.to_string()))?;
        let mut out = HashMap::new();
        for (offset, rel) in sec.relocations() {
            let RelocationFlags::Elf { r_type } = rel.flags() else {
                return Err(self.err(&sec_name, "relocation without ELF type"));
            };
            let RelocationTarget::Symbol(symbol) = rel.target() else {
                return Err(self.err(
                    &sec_name,
                    format!("relocation at {offset:#x} has no symbol"),
                ));
            };
            out.insert(offset as usize, Reloc { r_type, symbol });
        }
        Ok(out)
    }

    /// Builds one program: its own instructions, then every subprogram it reaches, each
    /// appended once, with calls and map loads relocated.
    fn link(
        &self,
        entry: usize,
        funcs: &[Func],
        maps: &[MapDef],
        maps_section: Option<object::SectionIndex>,
    ) -> Result<Program, ObjectError> {
        let main = &funcs[entry];
        let main_section = self.section_name(main.section);
        let mut bytecode: Vec<u8> = Vec::new();
        let mut map_refs = Vec::new();
        // (function index, first output instruction)
        let mut placed: Vec<(usize, usize)> = vec![(entry, 0)];
        let mut relocs_cache: HashMap<usize, HashMap<usize, Reloc>> = HashMap::new();
        let mut next = 0;
        while next < placed.len() {
            let (fi, out_start) = placed[next];
            next += 1;
            let f = &funcs[fi];
            let sec_name = self.section_name(f.section);
            let sec = self
                .file
                .section_by_index(f.section)
                .map_err(|e| self.err(&sec_name, e.to_string()))?;
            let data = sec
                .data()
                .map_err(|e| self.err(&sec_name, format!("cannot read: {e}")))?;
            let code = data
                .get(f.start * INSN_SIZE..(f.start + f.len) * INSN_SIZE)
                .ok_or_else(|| self.err(&sec_name, format!("function {} out of bounds", f.name)))?;
            debug_assert_eq!(bytecode.len(), out_start * INSN_SIZE);
            bytecode.extend_from_slice(code);
            if let std::collections::hash_map::Entry::Vacant(e) = relocs_cache.entry(f.section.0) {
                e.insert(self.section_relocs(f.section)?);
            }
            let relocs = &relocs_cache[&f.section.0];

            let mut i = 0;
            while i < f.len {
                let sec_insn = f.start + i;
                let out_insn = out_start + i;
                let at = out_insn * INSN_SIZE;
                let opcode = bytecode[at];
                let src_reg = bytecode[at + 1] >> 4;
                let imm = i32::from_le_bytes([
                    bytecode[at + 4],
                    bytecode[at + 5],
                    bytecode[at + 6],
                    bytecode[at + 7],
                ]);
                let reloc = relocs.get(&(sec_insn * INSN_SIZE));
                if opcode == OP_LDDW {
                    if let Some(rel) = reloc {
                        let map = self.map_reloc(rel, &sec_name, &f.name, maps, maps_section)?;
                        // The map index is the placeholder every backend replaces with its
                        // own handle (an fd in the kernel, a token in the emulator).
                        bytecode[at + 1] = (bytecode[at + 1] & 0x0f) | (BPF_PSEUDO_MAP_FD << 4);
                        bytecode[at + 4..at + 8].copy_from_slice(&(map as u32).to_le_bytes());
                        bytecode[at + 12..at + 16].copy_from_slice(&0u32.to_le_bytes());
                        map_refs.push(MapRef {
                            insn: out_insn,
                            map,
                        });
                    } else if src_reg != 0 {
                        return Err(self.err(
                            &sec_name,
                            format!(
                                "{}: lddw with src_reg {src_reg} at instruction {i} is not supported",
                                f.name
                            ),
                        ));
                    }
                    i += 2;
                    continue;
                }
                if opcode == OP_CALL && src_reg == BPF_PSEUDO_CALL {
                    // libbpf: target = symbol offset / 8 + imm + 1 within the symbol's
                    // section; without a relocation the call is section-relative.
                    let (tsec, target) = match reloc {
                        Some(rel) if rel.r_type == R_BPF_64_32 => {
                            let sym = self
                                .file
                                .symbol_by_index(rel.symbol)
                                .map_err(|e| self.err(&sec_name, e.to_string()))?;
                            let Some(tsec) = sym.section_index() else {
                                return Err(self.err(
                                    &sec_name,
                                    format!("{}: call to undefined symbol", f.name),
                                ));
                            };
                            let base = (sym.address() as usize / INSN_SIZE) as i64;
                            (tsec, base + imm as i64 + 1)
                        }
                        Some(rel) => {
                            return Err(self.err(
                                &sec_name,
                                format!(
                                    "{}: call with relocation type {} is not supported",
                                    f.name, rel.r_type
                                ),
                            ));
                        }
                        None => (f.section, sec_insn as i64 + imm as i64 + 1),
                    };
                    let Some(ti) = funcs.iter().position(|g| {
                        g.section == tsec
                            && (g.start as i64) <= target
                            && target < (g.start + g.len) as i64
                    }) else {
                        return Err(self.err(
                            &sec_name,
                            format!(
                                "{}: call at instruction {i} targets {} instruction {target}, \
                                 which is in no function",
                                f.name,
                                self.section_name(tsec)
                            ),
                        ));
                    };
                    let t_out = match placed.iter().find(|(pi, _)| *pi == ti) {
                        Some((_, s)) => *s,
                        None => {
                            let end = placed.last().map(|(pi, s)| s + funcs[*pi].len).unwrap_or(0);
                            placed.push((ti, end));
                            end
                        }
                    };
                    let t_out = t_out as i64 + (target - funcs[ti].start as i64);
                    let new_imm = t_out - (out_insn as i64 + 1);
                    let new_imm = i32::try_from(new_imm)
                        .map_err(|_| self.err(&sec_name, "call offset overflows"))?;
                    bytecode[at + 4..at + 8].copy_from_slice(&new_imm.to_le_bytes());
                } else if let Some(rel) = reloc {
                    return Err(self.err(
                        &sec_name,
                        format!(
                            "{}: relocation type {} on opcode {opcode:#04x} at instruction {i} \
                             is not supported",
                            f.name, rel.r_type
                        ),
                    ));
                }
                i += 1;
            }
        }
        Ok(Program {
            name: main.name.clone(),
            section: main_section,
            bytecode,
            map_refs,
        })
    }

    fn map_reloc(
        &self,
        rel: &Reloc,
        sec_name: &str,
        func: &str,
        maps: &[MapDef],
        maps_section: Option<object::SectionIndex>,
    ) -> Result<usize, ObjectError> {
        if rel.r_type != R_BPF_64_64 {
            return Err(self.err(
                sec_name,
                format!(
                    "{func}: lddw relocation type {} is not supported",
                    rel.r_type
                ),
            ));
        }
        let sym = self
            .file
            .symbol_by_index(rel.symbol)
            .map_err(|e| self.err(sec_name, e.to_string()))?;
        let sym_name = sym.name().unwrap_or("?");
        if sym.section_index().is_none() || sym.section_index() != maps_section {
            let target = sym
                .section_index()
                .map(|s| self.section_name(s))
                .unwrap_or_else(|| "undefined".into());
            return Err(self.err(
                sec_name,
                format!(
                    "{func}: lddw of {sym_name} in section {target}: only BTF-defined maps \
                     in .maps are supported (no global data, no legacy maps)"
                ),
            ));
        }
        maps.iter()
            .position(|m| m.name == sym_name)
            .ok_or_else(|| self.err(sec_name, format!("{func}: unknown map {sym_name}")))
    }

    /// Reads every map definition from the BTF `.maps` data section. Each map's place in
    /// the section comes from its symbol (as libbpf does; clang may leave datasec offsets
    /// for the loader to fill in).
    fn parse_maps(&self) -> Result<MapsSection, ObjectError> {
        let Some(maps_sec) = self.file.section_by_name(".maps") else {
            if self.file.section_by_name("maps").is_some() {
                return Err(self.err("maps", "legacy map definitions are not supported"));
            }
            return Ok(MapsSection::default());
        };
        let btf_data = self
            .file
            .section_by_name(".BTF")
            .and_then(|s| s.data().ok())
            .ok_or_else(|| self.err(".maps", "no .BTF section: compile with -g"))?;
        let btf = Btf::parse(btf_data).map_err(|e| self.err(".BTF", e.to_string()))?;
        let vars = btf
            .datasec(".maps")
            .ok_or_else(|| self.err(".BTF", "no .maps data section in BTF"))?;
        let mut maps = Vec::new();
        for v in vars {
            let BtfType::Var { name, target } = btf
                .get(v.target)
                .map_err(|e| self.err(".BTF", e.to_string()))?
            else {
                return Err(self.err(
                    ".maps",
                    format!("datasec entry {} is not a variable", v.target),
                ));
            };
            let def = self
                .map_def(&btf, name, *target)
                .map_err(|e| self.err(".maps", format!("map {name}: {e}")))?;
            let values_off = values_offset(&btf, *target)
                .map_err(|e| self.err(".maps", format!("map {name}: {e}")))?;
            let (offset, size) = self
                .file
                .symbols()
                .find(|s| s.section_index() == Some(maps_sec.index()) && s.name() == Ok(name))
                .map(|s| (s.address() as u32, s.size() as u32))
                .unwrap_or((v.offset, v.size));
            maps.push((
                MapLayout {
                    offset,
                    size,
                    values_off,
                },
                def,
            ));
        }
        maps.sort_by_key(|(l, _)| l.offset);
        let (layout, defs) = maps.into_iter().unzip();
        Ok(MapsSection {
            index: Some(maps_sec.index()),
            defs,
            layout,
        })
    }

    fn map_def(&self, btf: &Btf, name: &str, ty: u32) -> Result<MapDef, btf::BtfError> {
        let id = btf.resolve(ty)?;
        let BtfType::Struct { members, .. } = btf.get(id)? else {
            return Err(btf::BtfError("not a struct".into()));
        };
        // `__uint(name, v)` is `int (*name)[v]`: the value is the array length.
        let uint = |target: u32| -> Result<u32, btf::BtfError> {
            match btf.get(btf.resolve(ptr_target(btf, target)?)?)? {
                BtfType::Array { nelems, .. } => Ok(*nelems),
                _ => Err(btf::BtfError(
                    "__uint field does not point to an array".into(),
                )),
            }
        };
        let mut def = MapDef {
            name: name.into(),
            map_type: MapType::Other(0),
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
            initial_programs: Vec::new(),
        };
        let mut has_values = false;
        for m in members {
            match m.name.as_str() {
                "type" => def.map_type = MapType::from_raw(uint(m.target)?),
                "max_entries" => def.max_entries = uint(m.target)?,
                "map_flags" => def.map_flags = uint(m.target)?,
                "key_size" => def.key_size = uint(m.target)?,
                "value_size" => def.value_size = uint(m.target)?,
                "key" => def.key_size = btf.size_of(ptr_target(btf, m.target)?)?,
                "value" => def.value_size = btf.size_of(ptr_target(btf, m.target)?)?,
                "values" => has_values = true,
                // Placement hints that do not change the emulated semantics.
                "pinning" | "numa_node" | "map_extra" => {}
                other => {
                    return Err(btf::BtfError(format!("unsupported map field `{other}`")));
                }
            }
        }
        if has_values {
            if def.map_type != MapType::ProgArray {
                return Err(btf::BtfError(format!(
                    "`values` initialisers are only supported for {}",
                    MapType::ProgArray
                )));
            }
            // libbpf fixes a prog array's value to a 4-byte program fd.
            if def.value_size == 0 {
                def.value_size = 4;
            }
        }
        if def.map_type == MapType::Other(0) {
            return Err(btf::BtfError("no map type".into()));
        }
        Ok(def)
    }

    /// Reads `.rel.maps`: each relocation inside a prog array's `values` member names the
    /// program that libbpf puts in that slot at load time.
    fn initial_programs(
        &self,
        maps: &mut MapsSection,
        programs: &[Program],
    ) -> Result<(), ObjectError> {
        let Some(sec_index) = maps.index else {
            return Ok(());
        };
        let mut relocs: Vec<_> = self.section_relocs(sec_index)?.into_iter().collect();
        relocs.sort_by_key(|(off, _)| *off);
        for (offset, rel) in relocs {
            let offset = offset as u32;
            let m = maps
                .layout
                .iter()
                .position(|l| l.offset <= offset && offset < l.offset + l.size)
                .ok_or_else(|| {
                    self.err(
                        ".rel.maps",
                        format!("relocation at {offset:#x} is in no map"),
                    )
                })?;
            let layout = &maps.layout[m];
            let def = &mut maps.defs[m];
            let name = def.name.clone();
            let rel_in_map = offset - layout.offset;
            let slot = match layout.values_off {
                Some(v)
                    if rel.r_type == R_BPF_64_ABS64
                        && rel_in_map >= v
                        && (rel_in_map - v).is_multiple_of(8) =>
                {
                    (rel_in_map - v) / 8
                }
                _ => {
                    return Err(self.err(
                        ".rel.maps",
                        format!("map {name}: unsupported relocation at {offset:#x}"),
                    ));
                }
            };
            let sym = self
                .file
                .symbol_by_index(rel.symbol)
                .map_err(|e| self.err(".rel.maps", e.to_string()))?;
            let prog = sym.name().unwrap_or("?");
            if !programs.iter().any(|p| p.name == prog) {
                return Err(self.err(
                    ".rel.maps",
                    format!("map {name} slot {slot}: {prog} is not a program"),
                ));
            }
            if slot >= def.max_entries {
                return Err(self.err(
                    ".rel.maps",
                    format!(
                        "map {name}: slot {slot} beyond max_entries {}",
                        def.max_entries
                    ),
                ));
            }
            def.initial_programs.push((slot, prog.to_owned()));
        }
        Ok(())
    }
}

fn ptr_target(btf: &Btf, id: u32) -> Result<u32, btf::BtfError> {
    let id = btf.resolve(id)?;
    match btf.get(id)? {
        BtfType::Ptr { target } => Ok(*target),
        _ => Err(btf::BtfError(format!("type id {id} is not a pointer"))),
    }
}

/// Byte offset of the `values` member in a map definition struct, if it has one.
fn values_offset(btf: &Btf, ty: u32) -> Result<Option<u32>, btf::BtfError> {
    let BtfType::Struct { members, .. } = btf.get(btf.resolve(ty)?)? else {
        return Err(btf::BtfError("not a struct".into()));
    };
    Ok(members
        .iter()
        .find(|m| m.name == "values")
        .map(|m| m.bit_offset / 8))
}
