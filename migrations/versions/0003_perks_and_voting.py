"""perks, posts, supporters wall, API keys, voting

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_api_keys_name'))
    )
    op.create_table('perks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('kind', sa.Enum('content', 'votes', 'wall', 'flag', 'reveal', name='perk_kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('votes', sa.Integer(), nullable=True),
    sa.Column('reveal', sa.String(length=500), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_perks_key_not_empty')),
    sa.CheckConstraint('votes IS NULL OR votes >= 0', name=op.f('ck_perks_votes_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_perks')),
    sa.UniqueConstraint('key', name=op.f('uq_perks_key'))
    )
    op.create_table('voting_rounds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('results_live', sa.Boolean(), nullable=False),
    sa.Column('staff_see_voters', sa.Boolean(), nullable=False),
    sa.Column('drop_votes_of_lapsed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('closes_at > opens_at', name=op.f('ck_voting_rounds_closes_after_opening')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voting_rounds'))
    )
    op.create_table('ballots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('budget', sa.Integer(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.CheckConstraint('used >= 0 AND used <= budget', name=op.f('ck_ballots_within_budget')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ballots_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['voting_rounds.id'], name=op.f('fk_ballots_round_id_voting_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ballots')),
    sa.UniqueConstraint('round_id', 'member_id', name=op.f('uq_ballots_round_id'))
    )
    op.create_table('feed_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_feed_tokens_member_id_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_tokens')),
    sa.UniqueConstraint('member_id', name=op.f('uq_feed_tokens_member_id')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_feed_tokens_token_hash'))
    )
    op.create_table('posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('teaser', sa.Text(), nullable=False),
    sa.Column('body_markdown', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('all_patrons', sa.Boolean(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['members.id'], name=op.f('fk_posts_author_id_members'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_posts')),
    sa.UniqueConstraint('slug', name=op.f('uq_posts_slug'))
    )
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.create_index('ix_posts_published_at', ['published_at'], unique=False)

    op.create_table('tier_perks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('perk_id', sa.Integer(), nullable=False),
    sa.Column('grant', sa.Enum('grant', 'withhold', name='perk_grant', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('votes', sa.Integer(), nullable=True),
    sa.CheckConstraint('votes IS NULL OR votes >= 0', name=op.f('ck_tier_perks_votes_not_negative')),
    sa.ForeignKeyConstraint(['perk_id'], ['perks.id'], name=op.f('fk_tier_perks_perk_id_perks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_tier_perks_tier_id_tiers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_perks')),
    sa.UniqueConstraint('tier_id', 'perk_id', name=op.f('uq_tier_perks_tier_id'))
    )
    op.create_table('topics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=140), nullable=False),
    sa.Column('why', sa.Text(), nullable=False),
    sa.Column('proposer_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', 'merged', 'planned', 'in_coverage', 'published', 'declined', name='topic_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('story_url', sa.String(length=500), nullable=True),
    sa.Column('final_votes', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('final_votes IS NULL OR final_votes >= 0', name=op.f('ck_topics_final_votes')),
    sa.CheckConstraint('length(title) > 0', name=op.f('ck_topics_title_not_empty')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['topics.id'], name=op.f('fk_topics_merged_into_id_topics'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['proposer_id'], ['members.id'], name=op.f('fk_topics_proposer_id_members'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['round_id'], ['voting_rounds.id'], name=op.f('fk_topics_round_id_voting_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topics'))
    )
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.create_index('ix_topics_round_id', ['round_id'], unique=False)

    op.create_table('wall_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('display_name', sa.String(length=80), nullable=False),
    sa.Column('show_tier', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(display_name) > 0', name=op.f('ck_wall_entries_name_not_empty')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_wall_entries_member_id_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wall_entries')),
    sa.UniqueConstraint('member_id', name=op.f('uq_wall_entries_member_id'))
    )
    op.create_table('post_tiers',
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_post_tiers_post_id_posts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_post_tiers_tier_id_tiers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('post_id', 'tier_id', name=op.f('pk_post_tiers'))
    )
    op.create_table('topic_status_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.Enum('pending', 'approved', 'rejected', 'merged', 'planned', 'in_coverage', 'published', 'declined', name='topic_change_from', native_enum=False, create_constraint=True, length=20), nullable=True),
    sa.Column('to_status', sa.Enum('pending', 'approved', 'rejected', 'merged', 'planned', 'in_coverage', 'published', 'declined', name='topic_change_to', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['members.id'], name=op.f('fk_topic_status_changes_actor_id_members'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_topic_status_changes_topic_id_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topic_status_changes'))
    )
    with op.batch_alter_table('topic_status_changes', schema=None) as batch_op:
        batch_op.create_index('ix_topic_status_changes_topic_id', ['topic_id'], unique=False)

    op.create_table('votes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ballot_id', sa.Integer(), nullable=False),
    sa.Column('topic_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ballot_id'], ['ballots.id'], name=op.f('fk_votes_ballot_id_ballots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_votes_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_votes_topic_id_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_votes')),
    sa.UniqueConstraint('topic_id', 'member_id', name=op.f('uq_votes_topic_id'))
    )
    with op.batch_alter_table('votes', schema=None) as batch_op:
        batch_op.create_index('ix_votes_ballot_id', ['ballot_id'], unique=False)



def downgrade():
    with op.batch_alter_table('votes', schema=None) as batch_op:
        batch_op.drop_index('ix_votes_ballot_id')

    op.drop_table('votes')
    with op.batch_alter_table('topic_status_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_topic_status_changes_topic_id')

    op.drop_table('topic_status_changes')
    op.drop_table('post_tiers')
    op.drop_table('wall_entries')
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_index('ix_topics_round_id')

    op.drop_table('topics')
    op.drop_table('tier_perks')
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index('ix_posts_published_at')

    op.drop_table('posts')
    op.drop_table('feed_tokens')
    op.drop_table('ballots')
    op.drop_table('voting_rounds')
    op.drop_table('perks')
    op.drop_table('api_keys')
