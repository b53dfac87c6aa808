"""The schema the emulator serves when Shopify's official schemas are not installed (``$HUB_SPECS_DIR`` absent,
as in the Docker image): the part of the Admin API the seeded shop holds data for, written for this project.

It covers every document the connector sends, so ``hub demo`` and ``hub sandbox serve`` work without the
specs; with them, the official schema of the requested version is served instead and every field of it
answers. Types keep Shopify's names, nullability and argument names; enums list only the values the sandbox
data uses (``CurrencyCode``, ``CountryCode``), and descriptions are left out.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphql import GraphQLSchema

_PAGING = "first: Int, after: String, last: Int, before: String, reverse: Boolean = false"

FALLBACK_SDL = f"""
schema {{ query: QueryRoot mutation: Mutation }}

scalar DateTime
scalar Decimal
scalar Money
scalar UnsignedInt64
scalar URL

interface Node {{ id: ID! }}

type QueryRoot {{
  customers({_PAGING}, query: String, sortKey: CustomerSortKeys = ID): CustomerConnection!
  orders({_PAGING}, query: String, sortKey: OrderSortKeys = PROCESSED_AT): OrderConnection!
  customersCount(query: String, limit: Int = 10000): Count
  ordersCount(query: String, limit: Int = 10000): Count
  customer(id: ID!): Customer
  order(id: ID!): Order
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  shop: Shop!
  currentAppInstallation: AppInstallation!
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
  bulkOperation(id: ID!): BulkOperation
}}

type Mutation {{
  tagsAdd(id: ID!, tags: [String!]!): TagsAddPayload
  tagsRemove(id: ID!, tags: [String!]!): TagsRemovePayload
  customerCreate(input: CustomerInput!): CustomerCreatePayload
  customerUpdate(input: CustomerInput!): CustomerUpdatePayload
  customerDelete(input: CustomerDeleteInput!): CustomerDeletePayload
  bulkOperationRunQuery(query: String!, groupObjects: Boolean! = false): BulkOperationRunQueryPayload
  bulkOperationRunMutation(mutation: String!, stagedUploadPath: String!, clientIdentifier: String,
    groupObjects: Boolean! = false): BulkOperationRunMutationPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
  stagedUploadsCreate(input: [StagedUploadInput!]!): StagedUploadsCreatePayload
}}

type PageInfo {{ hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }}

type Customer implements Node {{
  id: ID!
  legacyResourceId: UnsignedInt64!
  email: String
  firstName: String
  lastName: String
  displayName: String!
  phone: String
  state: CustomerState!
  tags: [String!]!
  note: String
  locale: String!
  verifiedEmail: Boolean!
  validEmailAddress: Boolean!
  canDelete: Boolean!
  taxExempt: Boolean!
  createdAt: DateTime!
  updatedAt: DateTime!
  numberOfOrders: UnsignedInt64!
  amountSpent: MoneyV2!
  lastOrder: Order
  orders({_PAGING}, query: String, sortKey: OrderSortKeys = ID): OrderConnection!
  emailMarketingConsent: CustomerEmailMarketingConsentState
  defaultEmailAddress: CustomerEmailAddress
  defaultAddress: MailingAddress
  addresses(first: Int): [MailingAddress!]!
  addressesV2({_PAGING}): MailingAddressConnection!
}}
type CustomerConnection {{ edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }}
type CustomerEdge {{ cursor: String! node: Customer! }}
enum CustomerSortKeys {{ CREATED_AT ID LOCATION NAME RELEVANCE UPDATED_AT }}
enum CustomerState {{ DECLINED DISABLED ENABLED INVITED }}
type CustomerEmailMarketingConsentState {{
  marketingState: CustomerEmailMarketingState!
  marketingOptInLevel: CustomerMarketingOptInLevel
  consentUpdatedAt: DateTime
}}
type CustomerEmailAddress {{
  emailAddress: String!
  marketingState: CustomerEmailAddressMarketingState!
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingUpdatedAt: DateTime
  validFormat: Boolean!
}}
enum CustomerEmailMarketingState {{ INVALID NOT_SUBSCRIBED PENDING REDACTED SUBSCRIBED UNSUBSCRIBED }}
enum CustomerEmailAddressMarketingState {{ INVALID NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED }}
enum CustomerMarketingOptInLevel {{ CONFIRMED_OPT_IN SINGLE_OPT_IN UNKNOWN }}
input CustomerInput {{
  id: ID
  email: String
  firstName: String
  lastName: String
  phone: String
  note: String
  locale: String
  tags: [String!]
}}
input CustomerDeleteInput {{ id: ID! }}
type CustomerCreatePayload {{ customer: Customer userErrors: [UserError!]! }}
type CustomerUpdatePayload {{ customer: Customer userErrors: [UserError!]! }}
type CustomerDeletePayload {{ deletedCustomerId: ID shop: Shop! userErrors: [UserError!]! }}

type MailingAddress implements Node {{
  id: ID!
  firstName: String
  lastName: String
  name: String
  company: String
  address1: String
  address2: String
  city: String
  province: String
  provinceCode: String
  zip: String
  country: String
  countryCodeV2: CountryCode
  phone: String
}}
type MailingAddressConnection {{ edges: [MailingAddressEdge!]! nodes: [MailingAddress!]! pageInfo: PageInfo! }}
type MailingAddressEdge {{ cursor: String! node: MailingAddress! }}
enum CountryCode {{ AT BE CH DE DK ES FR GB IE IT NL PL PT SE US }}

type Order implements Node {{
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  number: Int!
  email: String
  phone: String
  note: String
  createdAt: DateTime!
  updatedAt: DateTime!
  processedAt: DateTime!
  cancelledAt: DateTime
  cancelReason: OrderCancelReason
  closed: Boolean!
  closedAt: DateTime
  test: Boolean!
  sourceName: String
  tags: [String!]!
  displayFinancialStatus: OrderDisplayFinancialStatus
  displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  currencyCode: CurrencyCode!
  presentmentCurrencyCode: CurrencyCode!
  customer: Customer
  subtotalLineItemsQuantity: Int!
  totalPriceSet: MoneyBag!
  subtotalPriceSet: MoneyBag
  totalShippingPriceSet: MoneyBag!
  currentTotalPriceSet: MoneyBag!
  totalRefundedSet: MoneyBag!
  refunds(first: Int): [Refund!]!
  lineItems({_PAGING}): LineItemConnection!
}}
type OrderConnection {{ edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }}
type OrderEdge {{ cursor: String! node: Order! }}
enum OrderSortKeys {{ CREATED_AT CUSTOMER_NAME FINANCIAL_STATUS ID ORDER_NUMBER PROCESSED_AT RELEVANCE TOTAL_PRICE
  UPDATED_AT }}
enum OrderCancelReason {{ CUSTOMER DECLINED FRAUD INVENTORY OTHER STAFF }}
enum OrderDisplayFinancialStatus {{ AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED PENDING REFUNDED
  VOIDED }}
enum OrderDisplayFulfillmentStatus {{ FULFILLED IN_PROGRESS ON_HOLD OPEN PARTIALLY_FULFILLED PENDING_FULFILLMENT
  RESTOCKED SCHEDULED UNFULFILLED }}
type Refund implements Node {{
  id: ID!
  legacyResourceId: UnsignedInt64!
  createdAt: DateTime
  processedAt: DateTime!
  updatedAt: DateTime!
  note: String
  totalRefundedSet: MoneyBag!
  order: Order!
}}

type LineItem implements Node {{
  id: ID!
  name: String!
  title: String!
  sku: String
  vendor: String
  quantity: Int!
  currentQuantity: Int!
  originalUnitPriceSet: MoneyBag!
  originalTotalSet: MoneyBag!
  discountedTotalSet: MoneyBag!
  product: Product
}}
type LineItemConnection {{ edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }}
type LineItemEdge {{ cursor: String! node: LineItem! }}
type Product implements Node {{ id: ID! title: String! productType: String! vendor: String! handle: String! }}

type MoneyV2 {{ amount: Decimal! currencyCode: CurrencyCode! }}
type MoneyBag {{ shopMoney: MoneyV2! presentmentMoney: MoneyV2! }}
enum CurrencyCode {{ AUD CAD CHF DKK EUR GBP JPY NOK PLN SEK USD }}

type Count {{ count: Int! precision: CountPrecision! }}
enum CountPrecision {{ AT_LEAST EXACT }}

type Shop implements Node {{
  id: ID!
  name: String!
  email: String!
  myshopifyDomain: String!
  url: URL!
  currencyCode: CurrencyCode!
  ianaTimezone: String!
  plan: ShopPlan!
}}
type ShopPlan {{ displayName: String! partnerDevelopment: Boolean! shopifyPlus: Boolean! }}
type AppInstallation implements Node {{ id: ID! accessScopes: [AccessScope!]! }}
type AccessScope {{ handle: String! description: String! }}

type BulkOperation implements Node {{
  id: ID!
  status: BulkOperationStatus!
  errorCode: BulkOperationErrorCode
  createdAt: DateTime!
  completedAt: DateTime
  objectCount: UnsignedInt64!
  rootObjectCount: UnsignedInt64!
  fileSize: UnsignedInt64
  url: URL
  partialDataUrl: URL
  query: String!
  type: BulkOperationType!
}}
enum BulkOperationStatus {{ CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }}
enum BulkOperationErrorCode {{ ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }}
enum BulkOperationType {{ MUTATION QUERY }}
enum BulkOperationUserErrorCode {{ INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }}
type BulkOperationUserError {{ code: BulkOperationUserErrorCode field: [String!] message: String! }}
type BulkOperationRunQueryPayload {{ bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }}
type BulkOperationRunMutationPayload {{ bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }}
type BulkOperationCancelPayload {{ bulkOperation: BulkOperation userErrors: [UserError!]! }}

type UserError {{ field: [String!] message: String! }}
type TagsAddPayload {{ node: Node userErrors: [UserError!]! }}
type TagsRemovePayload {{ node: Node userErrors: [UserError!]! }}

input StagedUploadInput {{
  resource: StagedUploadTargetGenerateUploadResource!
  filename: String!
  mimeType: String!
  httpMethod: StagedUploadHttpMethodType = PUT
  fileSize: UnsignedInt64
}}
enum StagedUploadTargetGenerateUploadResource {{ BULK_MUTATION_VARIABLES FILE IMAGE }}
enum StagedUploadHttpMethodType {{ POST PUT }}
type StagedUploadsCreatePayload {{ stagedTargets: [StagedMediaUploadTarget!] userErrors: [UserError!]! }}
type StagedMediaUploadTarget {{ url: URL resourceUrl: URL parameters: [StagedUploadParameter!]! }}
type StagedUploadParameter {{ name: String! value: String! }}
"""

_lock = threading.Lock()
_built: list[GraphQLSchema] = []


def fallback_schema() -> GraphQLSchema:
    """The fallback schema, built once per process."""
    with _lock:
        if not _built:
            from graphql import build_schema

            _built.append(build_schema(FALLBACK_SDL))
        return _built[0]
