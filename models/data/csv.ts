// A streaming CSV parser (RFC 4180): fields separated by commas, records by LF or CRLF; a field in
// double quotes may hold commas, quotes (doubled) and line breaks. Feed it chunks as they arrive;
// it returns the complete records so far. A leading UTF-8 byte-order mark is dropped.
// Written here rather than taken from npm because the format is small and the input (the SA-1B
// caption set) is large enough that streaming matters.

export class CsvSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

export interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
}

export class CsvParser {
  private field = '';
  private fields: string[] = [];
  private inQuotes = false;
  /** The previous character closed a quoted field (so only a delimiter, a quote or an end may follow). */
  private afterQuote = false;
  private pendingCr = false;
  private started = false;
  private line = 1;
  private recordLine = 1;
  private fieldHasContent = false;

  push(chunk: string): CsvRecord[] {
    const out: CsvRecord[] = [];
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (this.pendingCr) {
        this.pendingCr = false;
        if (c === '\n') continue; // CRLF: the record already ended at CR
      }
      if (this.inQuotes) {
        if (c === '"') {
          this.inQuotes = false;
          this.afterQuote = true;
        } else {
          if (c === '\n') this.line++;
          this.field += c;
        }
        continue;
      }
      if (this.afterQuote && c === '"') {
        // a doubled quote inside a quoted field
        this.field += '"';
        this.inQuotes = true;
        this.afterQuote = false;
        continue;
      }
      if (c === ',') {
        this.endField();
      } else if (c === '\n' || c === '\r') {
        if (c === '\r') this.pendingCr = true;
        this.endRecord(out);
        this.line++;
        this.recordLine = this.line;
      } else if (c === '"' && !this.fieldHasContent) {
        this.inQuotes = true;
        this.fieldHasContent = true;
      } else {
        if (this.afterQuote) throw new CsvSyntaxError(`unexpected character after a closing quote`, this.line);
        if (c === '"') throw new CsvSyntaxError('a quote inside an unquoted field (quote the whole field and double the quote)', this.line);
        this.field += c;
        this.fieldHasContent = true;
      }
    }
    return out;
  }

  /** Ends the input: returns the last record when it had no final line break. */
  end(): CsvRecord[] {
    if (this.inQuotes) throw new CsvSyntaxError('a quoted field is not closed at the end of the file', this.recordLine);
    const out: CsvRecord[] = [];
    if (this.fieldHasContent || this.fields.length > 0) this.endRecord(out);
    return out;
  }

  private endField(): void {
    this.fields.push(this.field);
    this.field = '';
    this.afterQuote = false;
    this.fieldHasContent = false;
  }

  private endRecord(out: CsvRecord[]): void {
    const blank = this.fields.length === 0 && !this.fieldHasContent;
    this.endField();
    if (!blank) out.push({ fields: this.fields, line: this.recordLine });
    this.fields = [];
  }
}

/** Parses a whole CSV text (for small inputs and tests). */
export function parseCsv(text: string): string[][] {
  const parser = new CsvParser();
  return [...parser.push(text), ...parser.end()].map((record) => record.fields);
}
