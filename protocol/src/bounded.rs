//! CBOR encodings for the bounded `heapless` collections used in messages.
//!
//! Used through `#[cbor(with = "...")]`. Decoding a collection longer than
//! its bound fails instead of allocating: a peer can never make us hold more
//! than the type allows.

/// `heapless::String<N>` as a CBOR text string.
pub(crate) mod text {
    use minicbor::{
        Decoder, Encoder,
        decode::Error as DecodeError,
        encode::{Error as EncodeError, Write},
    };

    pub(crate) fn encode<C, W: Write, const N: usize>(
        s: &heapless::String<N>,
        e: &mut Encoder<W>,
        _: &mut C,
    ) -> Result<(), EncodeError<W::Error>> {
        e.str(s)?;
        Ok(())
    }

    pub(crate) fn decode<C, const N: usize>(
        d: &mut Decoder<'_>,
        _: &mut C,
    ) -> Result<heapless::String<N>, DecodeError> {
        let pos = d.position();
        let s = d.str()?;
        heapless::String::try_from(s)
            .map_err(|_| DecodeError::message("text longer than its bound").at(pos))
    }
}

/// `Option<heapless::String<N>>` as an optional CBOR text string.
pub(crate) mod opt_text {
    use minicbor::{
        Decoder, Encoder,
        decode::Error as DecodeError,
        encode::{Error as EncodeError, Write},
    };

    pub(crate) fn encode<C, W: Write, const N: usize>(
        s: &Option<heapless::String<N>>,
        e: &mut Encoder<W>,
        ctx: &mut C,
    ) -> Result<(), EncodeError<W::Error>> {
        match s {
            Some(s) => super::text::encode(s, e, ctx),
            None => {
                e.null()?;
                Ok(())
            }
        }
    }

    pub(crate) fn decode<C, const N: usize>(
        d: &mut Decoder<'_>,
        ctx: &mut C,
    ) -> Result<Option<heapless::String<N>>, DecodeError> {
        if d.datatype()? == minicbor::data::Type::Null {
            d.null()?;
            return Ok(None);
        }
        super::text::decode(d, ctx).map(Some)
    }

    pub(crate) fn nil<const N: usize>() -> Option<Option<heapless::String<N>>> {
        Some(None)
    }

    pub(crate) fn is_nil<const N: usize>(s: &Option<heapless::String<N>>) -> bool {
        s.is_none()
    }
}

/// `heapless::Vec<T, N>` as a definite-length CBOR array.
pub(crate) mod list {
    use minicbor::{
        Decode, Decoder, Encode, Encoder,
        decode::Error as DecodeError,
        encode::{Error as EncodeError, Write},
    };

    pub(crate) fn encode<C, W: Write, T: Encode<C>, const N: usize>(
        v: &heapless::Vec<T, N>,
        e: &mut Encoder<W>,
        ctx: &mut C,
    ) -> Result<(), EncodeError<W::Error>> {
        e.array(v.len() as u64)?;
        for item in v {
            item.encode(e, ctx)?;
        }
        Ok(())
    }

    pub(crate) fn decode<'b, C, T: Decode<'b, C>, const N: usize>(
        d: &mut Decoder<'b>,
        ctx: &mut C,
    ) -> Result<heapless::Vec<T, N>, DecodeError> {
        let pos = d.position();
        let Some(len) = d.array()? else {
            return Err(DecodeError::message("indefinite-length array").at(pos));
        };
        if len > N as u64 {
            return Err(DecodeError::message("array longer than its bound").at(pos));
        }
        let mut out = heapless::Vec::new();
        for _ in 0..len {
            let item = T::decode(d, ctx)?;
            // Cannot fail: the length was checked against N above.
            let _ = out.push(item);
        }
        Ok(out)
    }
}

/// A borrowed byte string of at most `N` bytes (module chunks).
pub(crate) mod bytes_at_most {
    use minicbor::{Decoder, decode::Error as DecodeError};

    pub(crate) fn decode<'b, C, const N: usize>(
        d: &mut Decoder<'b>,
        _: &mut C,
    ) -> Result<&'b [u8], DecodeError> {
        let pos = d.position();
        let bytes = d.bytes()?;
        if bytes.len() > N {
            return Err(DecodeError::message("byte string longer than its bound").at(pos));
        }
        Ok(bytes)
    }
}
