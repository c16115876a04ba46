// NumPy .npy files (format versions 1–3): a magic string, a small Python-dict header (descr,
// fortran_order, shape), then the raw array. 1-D arrays become one column `value`, 2-D arrays
// columns c0…c{n-1}; numeric and boolean dtypes in either byte order. Object/structured dtypes are
// refused with a clear error (they hold pickles or records, not a plain table).

export interface NpyArray {
  shape: number[];
  /** Row-major values (a Fortran-ordered file is transposed on read). */
  get(row: number, column: number): number | bigint | boolean;
  rows: number;
  columns: number;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

type Getter = (view: DataView, offset: number) => number | bigint | boolean;

function getterFor(descr: string): { size: number; get: Getter } | undefined {
  const little = descr[0] !== '>';
  const kind = descr.slice(1);
  switch (kind) {
    case 'f8': return { size: 8, get: (v, o) => v.getFloat64(o, little) };
    case 'f4': return { size: 4, get: (v, o) => v.getFloat32(o, little) };
    case 'i8': return { size: 8, get: (v, o) => v.getBigInt64(o, little) };
    case 'u8': return { size: 8, get: (v, o) => v.getBigUint64(o, little) };
    case 'i4': return { size: 4, get: (v, o) => v.getInt32(o, little) };
    case 'u4': return { size: 4, get: (v, o) => v.getUint32(o, little) };
    case 'i2': return { size: 2, get: (v, o) => v.getInt16(o, little) };
    case 'u2': return { size: 2, get: (v, o) => v.getUint16(o, little) };
    case 'i1': return { size: 1, get: (v, o) => v.getInt8(o) };
    case 'u1': return { size: 1, get: (v, o) => v.getUint8(o) };
    case 'b1': return { size: 1, get: (v, o) => v.getUint8(o) !== 0 };
    default: return undefined;
  }
}

// Why: .npy per-subject arrays are the seed's signal format; DuckDB cannot read them.
export function parseNpy(bytes: Buffer, file: string): NpyArray {
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(MAGIC)) throw new Error(`${file}: not a .npy file (bad magic)`);
  const major = bytes[6]!;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = bytes.subarray(headerStart, headerStart + headerLength).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || shapeText === undefined) throw new Error(`${file}: unreadable .npy header ${JSON.stringify(header.slice(0, 200))}`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (shape.length > 2) throw new Error(`${file}: ${shape.length}-D arrays are not supported (1-D and 2-D only)`);
  const getter = getterFor(descr.length === 2 ? `|${descr}` : descr);
  if (getter === undefined) throw new Error(`${file}: dtype ${descr} is not supported (numeric and bool only)`);
  const rows = shape[0] ?? 1;
  const columns = shape.length === 2 ? shape[1]! : 1;
  const dataStart = headerStart + headerLength;
  const needed = rows * columns * getter.size;
  if (bytes.length - dataStart < needed) throw new Error(`${file}: truncated .npy (${bytes.length - dataStart} data bytes, ${needed} expected)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart, needed);
  return {
    shape,
    rows,
    columns,
    get(row, column) {
      const index = fortran ? column * rows + row : row * columns + column;
      return getter.get(view, index * getter.size);
    },
  };
}
