//! The JSON Schemas of the MWAA-compatible API's document ([`super::document`]): MWAA's
//! request and answer shapes with the constraints the handlers and Hangar's spec enforce, from
//! the same tables the handlers read ([`super::model`]).

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

use super::model::{self, Kind};

pub(super) fn text(max: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(max)
}

pub(super) fn whole(min: u64, max: u64) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .build()
        .into()
}

pub(super) fn string_map(keys: Schema, value_max: Option<usize>, max: Option<usize>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(keys))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            text(value_max).build().into(),
        ))))
        .max_properties(max)
        .build()
        .into()
}

/// A string without NUL, which the platform's database cannot keep.
const NO_NUL: &str = "^[^\\x00]*$";

/// Any JSON value.
pub(super) fn any() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .build()
        .into()
}

pub(super) fn any_object() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .build()
        .into()
}

pub(super) fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

pub(super) fn kind_schema(kind: Kind) -> Schema {
    match kind {
        Kind::Text(max) => text(Some(max)).pattern(Some(NO_NUL)).build().into(),
        Kind::Whole(min) => whole(min, u64::from(u32::MAX)),
        Kind::Object => any_object(),
        Kind::OneOf(choices) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(choices.iter().copied()))
            .build()
            .into(),
    }
}

/// The body of `CreateEnvironment` (`required`) or `UpdateEnvironment`: the fields mapped to
/// Hangar's spec, with its bounds, and the fields kept verbatim, with MWAA's shapes; nothing
/// else.
pub(super) fn environment_input(required: &[&str], versions: Option<&[String]>) -> Schema {
    let classes: Vec<&str> = model::CLASSES.iter().map(|(n, _)| *n).collect();
    let mut o = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property(
            "Name",
            text(None).description(Some("The path's name, repeated (ignored)")),
        )
        .property(
            "AirflowVersion",
            match versions {
                Some(v) => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(v.iter().map(String::as_str))),
                None => text(None),
            }
            .description(Some("One of the versions the platform offers")),
        )
        .property(
            "EnvironmentClass",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(classes)),
        );
    for (name, least, most) in model::COUNTS {
        o = o.property(name, whole(u64::from(least), u64::from(most)));
    }
    o = o
        .property(
            "AirflowConfigurationOptions",
            string_map(
                text(None)
                    .pattern(Some(r"^[a-z0-9_]+\.[a-z0-9_]+$"))
                    .build()
                    .into(),
                None,
                Some(200),
            ),
        )
        .property(
            "Tags",
            string_map(
                text(Some(128)).min_length(Some(1)).build().into(),
                Some(256),
                Some(50),
            ),
        );
    for (name, kind) in model::KEPT {
        o = o.property(name, kind_schema(kind));
    }
    for r in required {
        o = o.required(*r);
    }
    o.build().into()
}

/// MWAA's `Environment` as `model::environment` gives it: Hangar's settings, the kept fields
/// as they were given, and the status.
pub(super) fn environment_output() -> Schema {
    let statuses = [
        "CREATING",
        "CREATE_FAILED",
        "AVAILABLE",
        "UPDATING",
        "UPDATE_FAILED",
        "UNAVAILABLE",
        "DELETING",
        "DELETED",
    ];
    let classes: Vec<&str> = model::CLASSES.iter().map(|(n, _)| *n).collect();
    let last_update = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "Status",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["SUCCESS", "PENDING", "FAILED"])),
        )
        .property("CreatedAt", ObjectBuilder::new().schema_type(Type::Number))
        .property("Source", text(None))
        .property(
            "Error",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("ErrorCode", text(None))
                .property("ErrorMessage", text(None))
                .required("ErrorCode")
                .required("ErrorMessage"),
        )
        .required("Status")
        .required("CreatedAt");
    let mut o = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("Name", text(None))
        .property(
            "Status",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(statuses)),
        )
        .property("Arn", text(None))
        .property("CreatedAt", ObjectBuilder::new().schema_type(Type::Number))
        .property("AirflowVersion", text(None))
        .property(
            "EnvironmentClass",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(classes)),
        )
        .property("MinWorkers", whole(0, u64::from(u32::MAX)))
        .property("MaxWorkers", whole(0, u64::from(u32::MAX)))
        .property("Schedulers", whole(0, u64::from(u32::MAX)))
        .property(
            "AirflowConfigurationOptions",
            string_map(text(None).build().into(), None, None),
        )
        .property("Tags", string_map(text(None).build().into(), None, None))
        .property("LastUpdate", last_update)
        .property(
            "WebserverUrl",
            text(None).description(Some("The Airflow UI's host and path, without a scheme")),
        );
    for (name, kind) in model::KEPT {
        o = o.property(name, kind_schema(kind));
    }
    for r in [
        "Name",
        "Status",
        "Arn",
        "CreatedAt",
        "AirflowVersion",
        "EnvironmentClass",
        "MinWorkers",
        "MaxWorkers",
        "Schedulers",
        "AirflowConfigurationOptions",
        "Tags",
        "LastUpdate",
    ] {
        o = o.required(r);
    }
    o.build().into()
}

/// MWAA's error body: `message` (`Message` for access errors); InvokeRestApi's errors add
/// what the environment's Airflow answered.
pub(super) fn error_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("message", text(None))
        .property("Message", text(None))
        .property("RestApiStatusCode", whole(100, 599))
        .property("RestApiResponse", any())
        .min_properties(Some(1))
        .build()
        .into()
}

pub(super) fn object_of(fields: &[(&str, Schema)]) -> Schema {
    let mut o = ObjectBuilder::new().schema_type(Type::Object);
    for (name, schema) in fields {
        o = o.property(*name, schema.clone()).required(*name);
    }
    o.build().into()
}

pub(super) fn empty_object() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(0))
        .build()
        .into()
}

/// InvokeRestApi's `Path`: `/`-separated segments, none of them `.` or `..`, no query (as
/// `super::invoke_rest_api` checks).
const REST_PATH_PATTERN: &str = r"^(/([^/?.][^/?]*|\.[^/?.][^/?]*|\.\.[^/?]+)?)+$";

/// InvokeRestApi's body: the REST call.
pub(super) fn rest_api_input() -> Schema {
    let scalar = || {
        ObjectBuilder::new().schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Boolean,
        ]))
    };
    // A value, or a list of them (its key repeats in the query).
    let value: Schema = OneOfBuilder::new()
        .item(scalar())
        .item(ArrayBuilder::new().items(scalar()))
        .build()
        .into();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "Path",
            text(Some(2048))
                .min_length(Some(1))
                .pattern(Some(REST_PATH_PATTERN))
                .description(Some(
                    "An Airflow REST API path under `/api/v2`, such as `/dags`: no `.` or `..` segment, no query",
                )),
        )
        .property(
            "Method",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["GET", "PUT", "POST", "PATCH", "DELETE"])),
        )
        .property(
            "QueryParameters",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value)))),
        )
        .property("Body", any())
        .required("Path")
        .required("Method")
        .build()
        .into()
}
