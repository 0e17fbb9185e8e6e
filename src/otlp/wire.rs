//! The protobuf wire format, read as far as splitting needs: a message's fields in order, each
//! a number and a value that borrows the message's bytes. What a field holds is copied as it
//! came, unknown fields included, so a split request loses nothing a newer client sent.

use prost::encoding::{decode_varint, encode_key, encode_varint, encoded_len_varint, WireType};

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    /// The whole field as it came: key and value.
    pub bytes: &'a [u8],
}

/// A field's value, by its wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Length-delimited: a string, bytes, a message or a packed repeated field.
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The message's bytes are no protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The fields of `message`, in order; the iterator ends at the first malformed one with
/// `Err(Malformed)`.
pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields { rest: message }
}

pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.read();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<Field<'a>, Malformed> {
        let start = self.rest;
        let key = decode_varint(&mut self.rest).map_err(|_| Malformed)?;
        let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        if number == 0 {
            return Err(Malformed);
        }
        let value = match key & 7 {
            0 => Value::Varint(decode_varint(&mut self.rest).map_err(|_| Malformed)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            2 => {
                let len = decode_varint(&mut self.rest).map_err(|_| Malformed)?;
                Value::Bytes(self.take(usize::try_from(len).map_err(|_| Malformed)?)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4"))),
            // Groups (3, 4) are proto2's and no OTLP message has one.
            _ => return Err(Malformed),
        };
        let bytes = &start[..start.len() - self.rest.len()];
        Ok(Field {
            number,
            value,
            bytes,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.rest.len() < n {
            return Err(Malformed);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }
}

/// Bytes a length-delimited field `number` of `len` bytes takes.
pub fn delimited_len(number: u32, len: usize) -> usize {
    prost::encoding::key_len(number) + encoded_len_varint(len as u64) + len
}

/// Appends the key and length of a length-delimited field `number` of `len` bytes (its value
/// follows).
pub fn open_delimited(number: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_prost_wrote_them_and_garbage_is_malformed() {
        let mut buf = Vec::new();
        prost::encoding::string::encode(1, &"name".to_string(), &mut buf);
        prost::encoding::uint64::encode(2, &300, &mut buf);
        prost::encoding::fixed64::encode(3, &7, &mut buf);
        prost::encoding::fixed32::encode(4, &9, &mut buf);
        let read: Vec<_> = fields(&buf).map(Result::unwrap).collect();
        let values: Vec<_> = read.iter().map(|f| (f.number, f.value)).collect();
        assert_eq!(
            values,
            [
                (1, Value::Bytes(b"name")),
                (2, Value::Varint(300)),
                (3, Value::Fixed64(7)),
                (4, Value::Fixed32(9))
            ]
        );
        let whole: Vec<u8> = read.iter().flat_map(|f| f.bytes.to_vec()).collect();
        assert_eq!(whole, buf);
        let mut cut = buf.clone();
        cut.truncate(3);
        assert_eq!(fields(&cut).last(), Some(Err(Malformed)));
        assert_eq!(fields(&[0x0b]).next(), Some(Err(Malformed)), "a group");
        assert_eq!(
            fields(&[0x00, 0x01]).next(),
            Some(Err(Malformed)),
            "field 0"
        );
    }
}
