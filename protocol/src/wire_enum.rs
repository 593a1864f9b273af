//! Code enums that stay decodable when a newer peer adds a code.
//!
//! Reasons and states travel as small unsigned integers. An old device that
//! receives a code it does not know keeps the number in `Unknown(code)`
//! instead of rejecting the whole message, so new codes are a compatible
//! change.

/// Declares a `Copy` enum that is encoded as its numeric code.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code this build does not know, kept as received. Holds only
            /// codes without a named variant: decoding maps known codes to
            /// their variants, so build values with `from_code`.
            Unknown(u16),
        }

        impl $name {
            /// Every known value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The number that represents this value on the wire.
            pub const fn code(self) -> u16 {
                match self {
                    $( $name::$variant => $code, )+
                    $name::Unknown(code) => code,
                }
            }

            /// The value for a wire code; unknown codes are preserved.
            pub const fn from_code(code: u16) -> Self {
                match code {
                    $( $code => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl<C> minicbor::Encode<C> for $name {
            fn encode<W: minicbor::encode::Write>(
                &self,
                e: &mut minicbor::Encoder<W>,
                _: &mut C,
            ) -> Result<(), minicbor::encode::Error<W::Error>> {
                e.u16(self.code())?;
                Ok(())
            }
        }

        impl<'b, C> minicbor::Decode<'b, C> for $name {
            fn decode(
                d: &mut minicbor::Decoder<'b>,
                _: &mut C,
            ) -> Result<Self, minicbor::decode::Error> {
                d.u16().map(Self::from_code)
            }
        }

    };
}

pub(crate) use wire_enum;
