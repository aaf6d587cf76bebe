//! Parsing an [`Update`] without serde's buffering.
//!
//! frankenstein's `Update` flattens its content into the object beside
//! `update_id`, and serde reads a flattened struct by first copying the
//! whole object into a generic tree of values, then reading that tree
//! again. [`parse_update`] reads the object once: `update_id` as a number,
//! and the one other key names the [`UpdateContent`] variant whose value
//! is read straight from the text. The result is the same `Update`.

use std::fmt;

use frankenstein::updates::{Update, UpdateContent};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, VariantAccess, Visitor,
};

/// Parses one update as Telegram sends it, without serde's intermediate
/// copy of the document; same result and errors as
/// `serde_json::from_str::<Update>`, apart from the errors' wording.
pub fn parse_update(text: &str) -> Result<Update, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let update = de.deserialize_map(UpdateVisitor)?;
    de.end()?;
    Ok(update)
}

struct UpdateVisitor;

impl<'de> Visitor<'de> for UpdateVisitor {
    type Value = Update;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Telegram update object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Update, A::Error> {
        let mut update_id = None;
        let mut content = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() == "update_id" {
                if update_id.is_some() {
                    return Err(de::Error::duplicate_field("update_id"));
                }
                update_id = Some(map.next_value()?);
            } else if content.is_none() {
                content = Some(map.next_value_seed(ContentSeed(key))?);
            } else {
                // Telegram sends one content field; serde's own reading
                // takes the first and ignores the rest, and so do we.
                map.next_value::<IgnoredAny>()?;
            }
        }
        let update_id = update_id.ok_or_else(|| de::Error::missing_field("update_id"))?;
        let content = content.ok_or_else(|| {
            de::Error::custom("the update has no content field (message, callback_query, ...)")
        })?;
        Ok(Update { update_id, content })
    }
}

/// An object key, borrowed from the text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads a content field's value as the variant its key names.
struct ContentSeed<'de>(Key<'de>);

impl<'de> DeserializeSeed<'de> for ContentSeed<'de> {
    type Value = UpdateContent;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UpdateContent, D::Error> {
        de::Deserialize::deserialize(Tagged {
            key: self.0,
            value: d,
        })
    }
}

/// An externally tagged enum whose tag is `key` and whose content is
/// `value`: what `{"key": value}` would be, without the copy.
struct Tagged<'de, D> {
    key: Key<'de>,
    value: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tagged<'de, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom("an update's content is read as an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de, D: Deserializer<'de>> EnumAccess<'de> for Tagged<'de, D> {
    type Error = D::Error;
    type Variant = Content<D>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Content<D>), D::Error> {
        let tag = match self.key {
            Key::Borrowed(s) => seed.deserialize(de::value::BorrowedStrDeserializer::new(s))?,
            Key::Owned(s) => seed.deserialize(de::value::StringDeserializer::new(s))?,
        };
        Ok((tag, Content(self.value)))
    }
}

/// The value of a content field.
struct Content<D>(D);

impl<'de, D: Deserializer<'de>> VariantAccess<'de> for Content<D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        de::Deserialize::deserialize(self.0)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, D::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATES: [&str; 4] = [
        r#"{"update_id":7,"message":{"message_id":1,"date":1767225600,"chat":{"id":42,"type":"private","first_name":"Ann"},"from":{"id":42,"is_bot":false,"first_name":"Ann"},"text":"hi"}}"#,
        r#"{"callback_query":{"id":"9","from":{"id":5,"is_bot":false,"first_name":"Bo"},"chat_instance":"c","data":"like:3"},"update_id":8}"#,
        r#"{"update_id":9,"edited_message":{"message_id":2,"date":1767225600,"edit_date":1767225601,"chat":{"id":-100,"type":"group","title":"g"},"text":"e\u0301"}}"#,
        r#"{"update_id":10,"inline_query":{"id":"q","from":{"id":5,"is_bot":false,"first_name":"Bo"},"query":"cats","offset":""}}"#,
    ];

    #[test]
    fn same_update_as_serde() {
        for text in UPDATES {
            let ours = parse_update(text).expect(text);
            let serde: Update = serde_json::from_str(text).expect(text);
            assert_eq!(ours, serde, "{text}");
        }
    }

    #[test]
    fn escaped_keys_are_read() {
        let text = r#"{"update\u005fid":3,"mess\u0061ge":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":"x"}}"#;
        let update = parse_update(text).unwrap();
        assert_eq!(update.update_id, 3);
        assert!(matches!(update.content, UpdateContent::Message(_)));
    }

    #[test]
    fn bad_updates_are_errors() {
        for (text, says) in [
            (
                r#"{"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"}}}"#,
                "update_id",
            ),
            (r#"{"update_id":1}"#, "no content field"),
            (r#"{"update_id":1,"no_such_kind":{}}"#, "unknown variant"),
            (r#"{"update_id":1,"message":{"date":0}}"#, "message_id"),
            (r#"{"update_id":1,"update_id":2,"message":{}}"#, "duplicate"),
            (r#"{"update_id":-1,"message":{}}"#, "invalid value"),
            (
                r#"{"update_id":1,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"}}} x"#,
                "trailing",
            ),
            ("[1]", "update object"),
        ] {
            let e = parse_update(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
